"""How a user error (:class:`~onlyif.errors.OnlyIfError`) raised in code that Ray runs reaches the CLI's one line.

The convention:

- **Ray Data functions** (``map_batches``) never let an ``OnlyIfError`` escape: they catch it and hand it back as
  data, :func:`error_record` in their output (a stats record, or the :data:`ERROR_COLUMN` of a table); the driver
  raises it again with :func:`raise_recorded` (or :func:`raise_first_in`). Raised instead, Ray Data would log the
  failed block with its traceback at ERROR on the user's terminal and wrap the error in ``UserCodeException``,
  whose copy on the driver keeps only the traceback text, not the original.
- **Ray Train workers** raise as local code does; the run's
  :class:`~onlyif.train.user_errors.StopOnUserError` callback ends the run at once (a user error is deterministic:
  ``FailureConfig`` would only repeat it), and the error comes back as the ``controller_failure`` of Ray Train's
  ``ControllerError``, which :func:`user_error` follows.
- **Ray tasks and actors** raise as local code does. Ray pickles the original exception into
  ``RayTaskError.cause`` (the error ``ray.get`` raises is also an instance of its class, through
  ``as_instanceof_cause``, but its text is the remote traceback); :func:`user_error` walks ``cause`` back to it.
  The CLI applies it to every ``OnlyIfError`` it prints.

Ray-free at import.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from onlyif.errors import ConfigError, OnlyIfError

ERROR_COLUMN = "onlyif_error"
"""Column of a Ray Data function's output table that carries an :func:`error_record` (JSON), null on good rows."""


def error_record(exc: OnlyIfError, **extra: Any) -> dict[str, Any]:
    """``exc`` as data: its message and class, plus ``extra`` fields for the driver."""
    return {"error": str(exc), "config_error": isinstance(exc, ConfigError), **extra}


def raise_recorded(record: dict[str, Any], prefix: str = "") -> None:
    """Raise the error ``record`` holds (:func:`error_record`), ``prefix`` before its message; nothing if none."""
    if "error" in record:
        raise (ConfigError if record["config_error"] else OnlyIfError)(prefix + record["error"])


def raise_first_in(column: Any, prefix: str = "") -> None:
    """Raise the first error recorded in ``column`` (a pyarrow :data:`ERROR_COLUMN`); nothing if it is all null."""
    if column.null_count < len(column):
        raise_recorded(json.loads(next(v for v in column.to_pylist() if v is not None)), prefix)


def user_error(exc: BaseException) -> BaseException:
    """The ``OnlyIfError`` a Ray task raised, found through ``RayTaskError.cause``, Python's ``__cause__`` and Ray
    Train's ``ControllerError.controller_failure``, as a plain error of its class with the first line of its message;
    ``exc`` itself when there is none."""
    ray_exceptions = sys.modules.get("ray.exceptions")  # none loaded: no Ray error to unwrap
    task_error = ray_exceptions.RayTaskError if ray_exceptions is not None else ()
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OnlyIfError) and not isinstance(e, task_error):
            return e if e is exc else type(e)(str(e).splitlines()[0] if str(e) else "")
        e = e.cause if isinstance(e, task_error) else (e.__cause__ or getattr(e, "controller_failure", None))
    return exc
