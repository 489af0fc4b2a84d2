"""Ending a Ray Train run at a worker's user error, instead of letting ``FailureConfig`` retry it.

A user error (:class:`~onlyif.errors.OnlyIfError`) is deterministic: a restarted worker group would only raise it
again, minutes later, and the user would get Ray's multi-screen traceback. Most are caught in the driver before any
worker starts (:mod:`onlyif.train.checks`); this callback covers the rest.
"""

from __future__ import annotations

from typing import Any

from ray.train import UserCallback

from onlyif.errors import OnlyIfError
from onlyif.ray_errors import user_error


class StopOnUserError(UserCallback):
    """Raises a worker's ``OnlyIfError`` in the Ray Train controller: Ray Train treats an error raised by a callback
    as a controller failure, which it does not retry, and ``fit`` raises a ``ControllerError`` whose
    ``controller_failure`` is the user error (:func:`onlyif.ray_errors.user_error` finds it there)."""

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, BaseException]) -> None:
        for rank in sorted(worker_exceptions):
            found = user_error(worker_exceptions[rank])
            if isinstance(found, OnlyIfError):
                raise found
