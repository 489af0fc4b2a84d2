"""``onlyif eval exact-match``: greedy exact match of a trained model on dataset splits."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onlyif.errors import OnlyIfError


def add_arguments(em: argparse.ArgumentParser) -> None:
    em.add_argument("--model", required=True, metavar="RUN_DIR|HF_DIR", help="a run directory or an HF model dir")
    em.add_argument("--data", required=True, metavar="DIR", help="dataset directory or s3://… URI")
    em.add_argument(
        "--split", action="append", metavar="NAME", help="split to evaluate, repeatable (default: test_unseen)"
    )
    em.add_argument("--max-examples", type=int, metavar="N", help="first N examples of each split")
    em.add_argument("--batch-size", type=int, default=256, metavar="N", help="decoding batch size (default 256)")
    em.add_argument(
        "--actors",
        type=int,
        default=0,
        metavar="N",
        help="decode with N Ray Data actors (map_batches) instead of in this process (default 0: in process)",
    )
    em.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="decode on this device (default auto: a GPU when one is visible; with --actors, one the cluster has)",
    )
    em.add_argument("--failures", type=int, default=20, metavar="N", help="failures kept per split (default 20)")
    em.add_argument("--out", metavar="DIR", help="write <split>.json and <split>_failures.jsonl here")


def run(args: argparse.Namespace) -> int:
    from onlyif.eval.distributed import evaluate_distributed
    from onlyif.eval.exact_match import evaluate_exact_match
    from onlyif.lm.models import load_eval_model, resolve_device
    from onlyif.storage import fetch, is_uri

    for name in ("max_examples", "batch_size", "failures"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "failures" else 1):
            raise OnlyIfError(f"--{name.replace('_', '-')}: must be positive (got {value})")
    splits = args.split or ["test_unseen"]
    if is_uri(args.data):
        args.data = str(fetch(args.data, "--data"))  # this node's copy (onlyif.storage)
    results = []
    loaded = None if args.actors else load_eval_model(args.model, resolve_device(args.device))
    for split in splits:
        if args.actors:
            res = evaluate_distributed(
                args.model,
                args.data,
                split,
                max_examples=args.max_examples,
                batch_size=args.batch_size,
                actors=args.actors,
                failures=args.failures,
                device=args.device,
            )
        else:
            model, codec = loaded
            res = evaluate_exact_match(
                model,
                args.data,
                split,
                max_examples=args.max_examples,
                batch_size=args.batch_size,
                failures=args.failures,
                codec=codec,
            )
        results.append(res)
    if args.out:
        write_results(Path(args.out), results)
    for res in results:
        parts = [f"{res['split']}: exact_match {res['exact_match']:.4f} (n={res['n']})"]
        if res.get("loss") is not None:
            parts.append(f"loss {res['loss']:.4f}")
        for part in ("applied", "noop"):
            if part in res and res[part]["n"]:
                parts.append(f"{part} {res[part]['exact_match']:.4f} (n={res[part]['n']})")
        print("  ".join(parts))
        for group in ("by_family", "by_k"):
            if len(res.get(group, {})) > 1:
                cells = ", ".join(f"{g} {s['exact_match']:.3f}" for g, s in res[group].items())
                print(f"  {group.removeprefix('by_')}: {cells}")
    return 0


def write_results(out: Path, results: list[dict]) -> None:
    """``<split>.json`` and ``<split>_failures.jsonl`` of every split, once all are evaluated: a new ``out`` appears
    whole (built in a temp folder beside it and renamed); into an existing non-empty folder (a run's ``eval/``)
    each file is replaced atomically."""
    from onlyif.io import atomic_dir, write_json_atomic, write_text_atomic

    def write(folder: Path) -> None:
        for res in results:
            write_json_atomic(folder / f"{res['split']}.json", {k: v for k, v in res.items() if k != "failures"})
            lines = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in res["failures"])
            write_text_atomic(folder / f"{res['split']}_failures.jsonl", lines)

    if out.is_dir() and any(out.iterdir()):
        write(out)
    else:
        with atomic_dir(out) as tmp:
            write(tmp)
