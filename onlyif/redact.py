"""Keep secrets out of what onlyif writes for others to read: manifests, ``run.json`` and MLflow params.

A value is replaced by :data:`REDACTED` when its key names a secret (``password``, ``token``, ``api_key``,
``aws_secret_access_key``…), and inside any string the password of a URL (``scheme://user:PASSWORD@host``, e.g. an
MLflow tracking URI) and strings shaped like well-known tokens (Hugging Face ``hf_…``, OpenAI ``sk-…``, GitHub
``ghp_…``, AWS access key ids ``AKIA…``, Slack ``xox…-``) are replaced. Configs and state files that a run needs to
resume are not redacted here: pass credentials through the environment (``MLFLOW_TRACKING_PASSWORD``,
``AWS_SECRET_ACCESS_KEY``, ``HF_TOKEN``), never in a config.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
_SECRET_KEY = re.compile(  # ``*_token`` names a secret unless it is a tokenizer's special token (``eos_token``)
    r"^(?!(.*[._-])?(bos|eos|pad|unk|sep|cls|mask)_token$)(.*[._-])?(password|passwd|secret|secret_key"
    r"|secret_access_key|token|api_key|apikey|access_key|access_key_id|private_key|credentials?)$",
    re.IGNORECASE,
)
_TOKEN = re.compile(
    r"\b(hf_[A-Za-z0-9]{30,}|sk-(proj-)?[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}|xox[abpr]-[A-Za-z0-9-]{10,})\b"
)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]+:)[^@/\s]+(?=@)")


def is_secret_key(key: str) -> bool:
    """Whether a config or parameter key (last dotted part) names a secret."""
    return bool(_SECRET_KEY.match(str(key).rsplit(".", 1)[-1]))


def redact_text(text: str) -> str:
    """``text`` with URL passwords and token-shaped substrings replaced."""
    return _TOKEN.sub(REDACTED, _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text))


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` (dicts, lists, strings, scalars) with secrets replaced by :data:`REDACTED`."""
    if key and is_secret_key(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value
