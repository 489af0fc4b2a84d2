"""Search for the embedded-default (``onlyif reproduce``) training settings: which model and optimizer settings show
the emergence phenomenon with the least training compute, robustly over seeds.

Learning dynamics do not depend on the device, so the search runs many small single-process trainings at once
(e.g. on a GPU machine's cores and GPU); the CPU cost of each setting is measured separately on the target CPU.
Each job trains one setting at one I on one seed, with the data ``onlyif generate`` would write for the preset
(same plan and chunks), the trainer's model factory, AdamW parameter groups, warmup + decay and clipping as the
trainer, and scores greedy exact match on applied examples of ``test_seen`` / ``test_unseen`` after every epoch.

    python bench/preset_search.py --jobs jobs.json --out results.jsonl --procs 12 --device cuda
    python bench/preset_search.py --select results.jsonl --top 8 --jobs stage2.json   # robustness round
    python bench/preset_search.py --demo --device cpu        # one tiny job, to check the script

A job is a JSON object: ``{"name": ..., "instructions": I, "seed": s, "task": {...}, "train": {...}}`` with
``task``/``train`` overrides on the reproduce preset. Every job appends one JSON line (per-epoch curves) to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _preset() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "onlyif/sweep/presets/reproduce.yaml").read_text())


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def split_rows(task: Any) -> dict[str, dict[str, list]]:
    """Every split of the task as column lists, generated exactly as ``onlyif generate`` does (in process)."""
    import pyarrow as pa

    from onlyif.tasks.examples import generate_chunk
    from onlyif.tasks.plan import build_plan

    plan = build_plan(task)
    out = {}
    for name, split in plan.splits.items():
        tables = [generate_chunk(split, plan.seed, c, a, b) for c, a, b in split.chunks()]
        out[name] = pa.concat_tables(tables).to_pydict()
    return out


def run_job(job: dict[str, Any], device: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from onlyif.eval.exact_match import eval_items, generate_records
    from onlyif.lm.batches import collate, join_examples
    from onlyif.lm.codec import CharCodec
    from onlyif.tasks.config import TaskConfig
    from onlyif.train.config import TrainConfig
    from onlyif.train.ds_config import lr_factor
    from onlyif.train.loop import param_groups
    from onlyif.train.model import build_model

    t0 = time.perf_counter()
    preset = _preset()
    budget = job.get("budget", 20000)
    task = TaskConfig.model_validate(
        _merge(preset["task"], {**job.get("task", {}), "instructions": job["instructions"], "budget": budget})
        | {"seed": job["seed"]}
    )
    train_dict = _merge(preset["train"], job.get("train", {}))
    cfg = TrainConfig.model_validate(train_dict | {"seed": job["seed"], "mlflow": False})
    rows = split_rows(task)
    codec = CharCodec()
    seqs, plens = join_examples(*codec.encode(rows["train"]), max_length=cfg.model.n_positions, truncate=False)
    evals = {}
    for split in ("test_seen", "test_unseen"):
        items = eval_items(codec, rows[split])
        evals[split] = [it for it in items if not it["noop"]]

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(
        param_groups(model, cfg.optim.weight_decay),
        lr=cfg.optim.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        eps=cfg.optim.eps,
    )
    n = len(seqs)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg, total))
    rng = np.random.default_rng(cfg.seed)
    curve = []
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(n)
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            arrays = collate([seqs[i] for i in idx], [plens[i] for i in idx], codec.pad_id)
            batch = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
        point = {"epoch": epoch + 1, "train_loss": loss_sum / steps_per_epoch}
        if epoch + 1 >= job.get("eval_from", 1):
            for split, items in evals.items():
                recs = generate_records(model, codec, items, 512)
                point[split] = sum(r["ok"] for r in recs) / max(1, len(recs))
        curve.append(point)
    return {
        **job,
        "params": params,
        "steps": total,
        "tokens_per_epoch": int(sum(len(s) for s in seqs)),
        "curve": curve,
        "seconds": time.perf_counter() - t0,
    }


def _worker(args: tuple[dict[str, Any], str]) -> str:
    import torch

    torch.set_num_threads(1)
    job, device = args
    try:
        return json.dumps(run_job(job, device))
    except Exception as exc:  # a failed setting is a result too
        return json.dumps({**job, "error": f"{type(exc).__name__}: {exc}"})


def select(results: list[dict[str, Any]], top: int, min_acc: float) -> list[dict[str, Any]]:
    """Second-round jobs: the cheapest settings whose every seed reached ``min_acc`` on both seen and unseen rules at
    the largest I (the hardest point), each run on the whole I grid with seeds 0, 1, 2."""
    from collections import defaultdict

    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if "error" not in r and r["instructions"] == r.get("budget", 20000):
            by_name[r["name"]].append(r)
    ranked = []
    for name, rs in by_name.items():
        finals = [min(r["curve"][-1].get("test_seen", 0), r["curve"][-1].get("test_unseen", 0)) for r in rs]
        if len(rs) >= 2 and min(finals) >= min_acc:
            m = _merge(_preset()["train"], rs[0].get("train", {}))
            cost = m["epochs"] * rs[0].get("budget", 20000) * m["model"].get("n_layer", 3) * m["model"]["n_embd"]
            ranked.append((cost, -min(finals), name, rs[0]))
    ranked.sort(key=lambda t: t[:3])
    jobs = []
    for *_, r in ranked[:top]:
        budget = r.get("budget", 20000)
        for i in (10, 100, 1000, budget):
            for seed in (0, 1, 2):
                base = {k: v for k, v in r.items() if k in ("name", "budget", "task", "train", "eval_from")}
                jobs.append(base | {"instructions": i, "seed": seed})
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=Path, help="JSON list of jobs")
    ap.add_argument("--out", type=Path, default=Path("preset_search.jsonl"))
    ap.add_argument("--procs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--demo", action="store_true", help="one tiny job (I=100, 2 epochs)")
    ap.add_argument("--select", type=Path, metavar="RESULTS", help="write second-round jobs to --jobs and exit")
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--min-acc", type=float, default=0.85)
    args = ap.parse_args()
    if args.select:
        results = [json.loads(line) for line in args.select.read_text().splitlines()]
        jobs = select(results, args.top, args.min_acc)
        args.jobs.write_text(json.dumps(jobs))
        print(f"{len(jobs) // 12} settings selected for the second round ({len(jobs)} jobs)")
        return
    if args.demo:
        jobs = [{"name": "demo", "instructions": 100, "seed": 0, "budget": 2000, "train": {"epochs": 2}}]
    else:
        jobs = json.loads(args.jobs.read_text())
    done = set()
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["name"], r["instructions"], r["seed"]))
    todo = [j for j in jobs if (j["name"], j["instructions"], j["seed"]) not in done]
    print(f"{len(todo)} jobs ({len(jobs) - len(todo)} already done), {args.procs} processes", flush=True)
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    with ctx.Pool(args.procs, maxtasksperchild=20) as pool, args.out.open("a") as f:
        for i, line in enumerate(pool.imap_unordered(_worker, [(j, args.device) for j in todo]), 1):
            f.write(line + "\n")
            f.flush()
            r = json.loads(line)
            last = r.get("curve", [{}])[-1]
            print(
                f"[{i}/{len(todo)} {time.perf_counter() - t0:.0f}s] {r['name']} I={r['instructions']} "
                f"s={r['seed']}: {r.get('error') or last}",
                flush=True,
            )


if __name__ == "__main__":
    main()
