"""Model directories: checks, loading an HF causal LM for inference, and the device to run it on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from onlyif.errors import OnlyIfError


def check_model_dir(path: str | os.PathLike) -> Path:
    """An HF model directory must exist and hold ``config.json``."""
    p = Path(path)
    if not p.is_dir():
        raise OnlyIfError(f"model {p}: directory not found")
    if not (p / "config.json").is_file():
        raise OnlyIfError(f"model {p}: no config.json (not a Hugging Face model directory)")
    return p


def max_positions(model_config: Any) -> int | None:
    """The longest sequence an HF config accepts, if it says."""
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(model_config, name, None)
        if isinstance(value, int):
            return value
    return None


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """An HF model directory, or a run directory of ``onlyif train`` (its exported ``model/``)."""
    p = Path(path)
    if (p / "model" / "config.json").is_file():
        return p / "model"
    if not p.exists():
        raise OnlyIfError(f"--model {p}: not found")
    if not (p / "config.json").is_file():
        raise OnlyIfError(f"--model {p}: neither an HF model directory (config.json) nor a run directory (model/)")
    return p


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a CUDA device is visible, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    if device == "cpu":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise OnlyIfError("--device cuda: no CUDA device is visible (use auto or cpu)")
    return "cpu"


def load_causal_lm(path: str | os.PathLike, what: str = "model") -> Any:
    """``AutoModelForCausalLM.from_pretrained`` in fp32; an unloadable directory is one line naming ``what``."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise OnlyIfError(f"{what} {path}: cannot load ({str(exc).splitlines()[0]})") from None


def load_eval_model(path: str | os.PathLike, device: str = "cpu") -> tuple[Any, Any]:
    """The model and codec of an HF or run directory, ready for decoding."""
    from onlyif.lm.codec import load_codec

    model_dir = resolve_model_dir(path)
    model = load_causal_lm(model_dir, "--model")
    return model.to(device).eval(), load_codec(model_dir)
