"""Checking that a TCP service answers, so that a run fails in seconds instead of after a library's retries."""

from __future__ import annotations

import socket


def connect_error(host: str, port: int, timeout: float) -> str | None:
    """Why nothing answers at ``host:port`` within ``timeout`` seconds (e.g. "Connection refused"), or None."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or exc.__class__.__name__
