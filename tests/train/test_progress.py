"""Console progress of a training run, read from its ``metrics.jsonl`` while the Train controller appends to it."""

from __future__ import annotations

import io
import json

from onlyif.train.progress import TrainProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _step(step: int, loss: float) -> dict:
    return {"kind": "step", "epoch": 1, "step": step, "train_loss": loss, "lr": 0.001}


def _epoch(epoch: int, step: int) -> dict:
    rec = {"kind": "epoch", "epoch": epoch, "step": step, "train_loss": 1.25, "test_seen/exact_match": 0.5}
    return rec | {"test_seen/loss": 0.75, "test_seen/exact_match_applied": 0.4, "test_code/loss": 2.0}


def _append(path, *recs, tail: str = "") -> None:
    with path.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in recs) + tail)


def test_plain_lines_every_epoch_and_step_reports_at_most_every_interval(tmp_path):
    path, stream = tmp_path / "metrics.jsonl", io.StringIO()
    with TrainProgress(path, total_steps=20, epochs=2, stream=stream, poll_s=0.01, min_interval=3600):
        _append(path, _step(2, 3.0), _step(4, 2.5), _epoch(1, 10))
        _append(path, _epoch(2, 20), tail='{"kind": "step", "ep')  # a line still being written: not read
    lines = [line.rsplit("  (", 1)[0] for line in stream.getvalue().splitlines()]
    assert lines == [
        "train: epoch 1/2  step 2/20  loss 3.0000",  # step 4 came within the interval: held back
        "train: epoch 1/2  step 10/20  loss 1.2500  test_code/loss 2.0000  test_seen/exact_match 0.5000",
        "train: epoch 2/2  step 20/20  loss 1.2500  test_code/loss 2.0000  test_seen/exact_match 0.5000",
    ]


def test_a_resumed_run_shows_only_new_reports(tmp_path):
    path, stream = tmp_path / "metrics.jsonl", io.StringIO()
    _append(path, _epoch(1, 10), tail='{"kind": "ep\n')  # the earlier run died writing its last line
    with TrainProgress(path, total_steps=20, epochs=2, stream=stream, poll_s=0.01):
        _append(path, _epoch(2, 20))
    assert [line.split("  step")[0] for line in stream.getvalue().splitlines()] == ["train: epoch 2/2"]


def test_a_bar_on_a_terminal(tmp_path):
    path, stream = tmp_path / "metrics.jsonl", _Terminal()
    with TrainProgress(path, total_steps=20, epochs=2, stream=stream, poll_s=0.01):
        _append(path, _step(4, 2.5), _epoch(1, 10))
    shown = stream.getvalue()
    assert "train:" in shown and "10/20" in shown and "epoch=1/2" in shown and "test_seen/exact_match=0.5000" in shown
    assert "train: epoch" not in shown  # no plain lines beside the bar
    resumed = _Terminal()
    with TrainProgress(path, total_steps=20, epochs=2, stream=resumed, poll_s=0.01):  # starts where the run is
        assert " 10/20 " in resumed.getvalue()
        _append(path, _epoch(2, 20))
    assert " 20/20 " in resumed.getvalue()
