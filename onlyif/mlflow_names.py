"""Metric names as MLflow accepts them. Our metric keys may hold ``@`` (``humaneval/pass@1``), which MLflow refuses
(names are word characters, ``/ . - :`` and spaces); it is spelled ``_at_`` there and read back by the inverse."""

from __future__ import annotations


def to_mlflow(key: str) -> str:
    """``humaneval/pass@1`` → ``humaneval/pass_at_1``."""
    return key.replace("@", "_at_")


def from_mlflow(name: str) -> str:
    """``humaneval/pass_at_1`` → ``humaneval/pass@1`` (the inverse of :func:`to_mlflow` for our metric names)."""
    return name.replace("pass_at_", "pass@")
