"""Console progress of one training run (``onlyif train``), read from the run's ``metrics.jsonl`` as the Train
controller appends to it: a bar over the optimizer steps with the epoch, loss and exact match on a terminal, plain
lines otherwise (``ray job logs``, CI) — every epoch, and step reports at most every ``min_interval`` seconds.
Written to stderr: stdout keeps the command's JSON result."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO


def _shown(rec: dict[str, Any]) -> dict[str, float]:
    """The numbers a line shows: the loss, then each split's exact match (its loss where it has none)."""
    out = {"loss": rec["train_loss"]} if "train_loss" in rec else {}
    splits = {k.rsplit("/", 1)[0] for k in rec if k.endswith(("/exact_match", "/loss")) and k.count("/") == 1}
    for split in sorted(splits):
        key = f"{split}/exact_match" if f"{split}/exact_match" in rec else f"{split}/loss"
        out[key] = rec[key]
    return out


def _records(lines: bytes) -> list[dict[str, Any]]:
    """The reports in ``lines``; a line that is not one (cut short when an earlier run died) is skipped."""
    out = []
    for line in lines.splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return [r for r in out if isinstance(r, dict)]


class TrainProgress:
    """Follows ``metrics_file`` in a thread while the run trains (``with TrainProgress(...):``); on a resumed run
    the lines already there are history, not news: the bar starts at their last step."""

    def __init__(
        self,
        metrics_file: Path,
        total_steps: int,
        epochs: int,
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        poll_s: float = 1.0,
        min_interval: float = 10.0,
    ) -> None:
        self.path, self.total, self.epochs = Path(metrics_file), total_steps, epochs
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.poll_s, self.min_interval = poll_s, min_interval
        before = self.path.read_bytes() if self.path.is_file() else b""
        self._offset = len(before)
        self._resumed_at = max((int(r.get("step", 0)) for r in _records(before)), default=0)
        self._last_line = float("-inf")
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="train-progress", daemon=True)
        self._bar: Any = None

    def __enter__(self) -> TrainProgress:
        if self.live:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total, initial=self._resumed_at, desc="train", unit="step", file=self.stream, leave=False
            )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()  # what the last report wrote
        if self._bar is not None:
            self._bar.close()

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._read()

    def _read(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self._offset += len(complete)
        for rec in _records(complete):
            self._show(rec)

    def _show(self, rec: dict[str, Any]) -> None:
        epoch, step = rec.get("epoch"), int(rec.get("step", 0))
        values = _shown(rec)
        if self._bar is not None:
            self._bar.update(max(0, step - self._bar.n))
            self._bar.set_postfix({"epoch": f"{epoch}/{self.epochs}", **{k: f"{v:.4f}" for k, v in values.items()}})
            return
        now = time.monotonic()
        if rec.get("kind") == "step" and now - self._last_line < self.min_interval:
            return
        self._last_line = now
        text = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
        line = f"train: epoch {epoch}/{self.epochs}  step {step}/{self.total}  {text}  ({now - self._t0:.0f} s)"
        print(line, file=self.stream, flush=True)
