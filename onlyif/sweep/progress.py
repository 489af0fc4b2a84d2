"""Live sweep progress on the console: each running trial's point, epoch, loss and last eval metric, and finished
trials' results — a compact live table (rich) on a terminal, plain lines otherwise (``ray job logs``, CI logs).

The plain form prints a line when a trial starts, reports an epoch or ends, at most one per trial every
``min_interval`` seconds (a trial's last line is never held back), so a log file gets a few lines per trial.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback

from onlyif.mlflow_names import FINAL_KEY


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


class SweepProgress(Callback):
    """Tune callback: the state of every trial of the grid, shown as it changes."""

    def __init__(self, total: int, metric: str, live: bool | None = None, min_interval: float = 5.0) -> None:
        self.total, self.metric, self.min_interval = total, metric, min_interval
        self.live = sys.stdout.isatty() if live is None else live
        self.rows: dict[str, dict[str, Any]] = {}
        self.t0 = time.monotonic()
        self._printed: dict[str, float] = {}
        self._console: Any = None
        self._live: Any = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks into its experiment state
        return {"total": self.total, "metric": self.metric, "live": self.live, "min_interval": self.min_interval}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    # Tune hooks ------------------------------------------------------------------------------------------------

    def setup(self, **info: Any) -> None:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._console = Console()
            self._live = Live(_Rendered(self), console=self._console, refresh_per_second=1, transient=False)
            self._live.start()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        for trial in trials:  # pending trials, and on resume those finished in an earlier run
            if trial.trial_id not in self.rows:
                row = self._row(trial)
                last = trial.last_result or {}
                if trial.status == "TERMINATED" and last.get(FINAL_KEY) == 1:
                    row.update(status="done", epoch=last.get("epoch"), loss=last.get("train_loss"))
                    row["value"] = last.get(self.metric)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self._row(trial)
        row.update(status="running", started=time.monotonic())
        self._show(trial.trial_id, f"start {row['point']}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        row = self._row(trial)
        if result.get("kind") == "step":
            return
        row["epoch"] = int(result.get("epoch", row["epoch"] or 0))
        if "train_loss" in result:
            row["loss"] = float(result["train_loss"])
        if self.metric in result:
            row["value"] = float(result[self.metric])
        if result.get(FINAL_KEY) == 1:
            return  # the end is shown by on_trial_complete
        self._show(trial.trial_id, self._progress_text(row))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self._row(trial)
        finished = (trial.last_result or {}).get(FINAL_KEY) == 1
        row["status"] = "done" if finished else "stopped"
        row["ended"] = time.monotonic()
        self._show(trial.trial_id, f"{'done' if finished else 'stopped early'}  {self._progress_text(row)}", True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self._row(trial)
        row["status"], row["ended"] = "error", time.monotonic()
        self._show(trial.trial_id, f"ERROR {row['point']} (see the trial's error.txt)", True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    # rendering -------------------------------------------------------------------------------------------------

    def _row(self, trial: Any) -> dict[str, Any]:
        if trial.trial_id not in self.rows:
            point = trial.config["point"]
            self.rows[trial.trial_id] = {
                "point": point["id"],
                "epochs": int(point["train"].get("epochs") or 0),
                "epoch": None,
                "loss": None,
                "value": None,
                "status": "pending",
                "started": None,
                "ended": None,
            }
        return self.rows[trial.trial_id]

    def _progress_text(self, row: dict[str, Any]) -> str:
        return (
            f"{row['point']}  epoch {row['epoch'] or 0}/{row['epochs']}  loss {_fmt(row['loss'])}  "
            f"{self.metric} {_fmt(row['value'])}"
        )

    def _counts(self) -> str:
        done = sum(r["status"] == "done" for r in self.rows.values())
        running = sum(r["status"] == "running" for r in self.rows.values())
        return f"{done}/{self.total} done, {running} running, {time.monotonic() - self.t0:.0f} s"

    def _show(self, trial_id: str, text: str, force: bool = False) -> None:
        if self._live is not None:
            return  # the live table re-renders itself every second
        now = time.monotonic()
        if not force and now - self._printed.get(trial_id, -1e9) < self.min_interval:
            return
        self._printed[trial_id] = now
        print(f"sweep [{self._counts()}] {text}", flush=True)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"sweep: {self._counts()}", title_justify="left", expand=False)
        for name in ("point", "status", "epoch", "train loss", self.metric, "time"):
            table.add_column(name, justify="left" if name in ("point", "status") else "right")
        now = time.monotonic()
        for r in self.rows.values():
            spent = (r["ended"] or now) - r["started"] if r["started"] is not None else None
            table.add_row(
                r["point"],
                r["status"],
                f"{r['epoch'] or 0}/{r['epochs']}",
                _fmt(r["loss"]),
                _fmt(r["value"]),
                f"{spent:.0f} s" if spent is not None else "-",
            )
        return table


class _Rendered:
    """The live table, rebuilt at each refresh (so running trials' times move)."""

    def __init__(self, progress: SweepProgress) -> None:
        self.progress = progress

    def __rich__(self) -> Any:
        return self.progress._table()
