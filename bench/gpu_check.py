"""GPU checks of onlyif (bench/README.md, "GPU checks"); started by bench/gpu_check.sh on the GPU machine.

Each check runs the product (``python3 -m onlyif.cli ...`` or a few lines of its Python API) in processes of its
own under a time limit, so one failure does not stop the next; it prints PASS/FAIL/SKIP with its numbers. Checks
that would start past ``--budget`` seconds are skipped. Writes ``OUT/checks.log`` (every command and its output)
and ``OUT/summary.json``. Sub-modes ``probe-ray`` and ``probe-embed`` are the in-process parts of two checks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORK = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/onlyif-gpu"))
DATA = WORK / "data"
CLI = [sys.executable, "-m", "onlyif.cli"]

# The paper's GPT-2 (6 layers, d 256, 4 heads) on the CPU-sized smoke task (sequences of ~43 tokens), one GPU worker.
BASE = {
    "model": {"n_layer": 6, "n_embd": 256, "n_head": 4, "n_positions": 64},
    "optim": {"lr": 1e-3, "warmup": 0.05, "schedule": "linear", "grad_clip": 1.0},
    "batch_size": 256,
    "epochs": 4,
    "log_every_steps": 5,
    "deepspeed": {"zero_stage": 2, "bf16": True},
    "scaling": {"num_workers": 1, "use_gpu": True, "resources_per_worker": {"CPU": 4, "GPU": 1}},
    "eval": {"splits": ["test_seen", "test_unseen"], "max_examples": 1000, "batch_size": 1024, "every_epochs": 0},
    "checkpoint": {"keep": 1},
    "mlflow": False,
}


def merged(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in (nested dicts merged, except ``resources_per_worker``, replaced)."""
    out = json.loads(json.dumps(base))
    for k, v in over.items():
        nested = isinstance(v, dict) and isinstance(out.get(k), dict) and k != "resources_per_worker"
        out[k] = merged(out[k], v) if nested else v
    return out


class Runner:
    def __init__(self, out: Path, budget: float) -> None:
        self.out, self.budget, self.t0 = out, budget, time.monotonic()
        self.log = (out / "checks.log").open("a")
        self.results: dict[str, dict] = {}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def sh(self, cmd: list[str], timeout: float) -> tuple[int, float, str]:
        """Run ``cmd`` (output into the log), at most ``timeout`` s and never past the budget."""
        timeout = max(1.0, min(timeout, self.left()))
        self.log.write(f"\n$ {' '.join(cmd)}   (limit {timeout:.0f} s)\n")
        self.log.flush()
        t = time.monotonic()
        # A session of its own: on timeout the whole group goes (Ray's processes with the driver).
        try:
            p = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
            )
        except OSError as exc:
            self.log.write(f"{exc}\n")
            return 127, 0.0, str(exc)
        try:
            text, _ = p.communicate(timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            try:
                text, _ = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # a detached grandchild still holds the pipe
                text = ""
            rc = 124
        secs = time.monotonic() - t
        self.log.write(text + f"[rc {rc}, {secs:.1f} s]\n")
        self.log.flush()
        return rc, secs, text

    def check(self, name: str, need: float, fn) -> None:
        if self.left() < need:
            self.record(name, "SKIP", {"why": f"{self.left():.0f} s of the budget left, needs ~{need:.0f}"})
            return
        t = time.monotonic()
        self.log.write(f"\n===== {name} =====\n")
        try:
            ok, info = fn()
        except Exception as exc:  # a broken check is a FAIL, the next one still runs
            ok, info = False, {"error": f"{type(exc).__name__}: {exc}"}
        info["seconds"] = round(time.monotonic() - t, 1)
        self.record(name, "PASS" if ok else "FAIL", info)

    def record(self, name: str, status: str, info: dict) -> None:
        self.results[name] = {"status": status, **info}
        print(f"{status} {name} {json.dumps(info, sort_keys=True)}", flush=True)
        (self.out / "summary.json").write_text(json.dumps(self.results, indent=2, sort_keys=True))


def tail(text: str, n: int = 600) -> str:
    return text[-n:].replace("\n", " | ")


def read_metrics(run: Path) -> tuple[list[dict], list[dict]]:
    """A run's ``metrics.jsonl`` as (step records, epoch records)."""
    steps, epochs = [], []
    if (run / "metrics.jsonl").is_file():
        for line in (run / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            (steps if rec.get("kind") == "step" else epochs).append(rec)
    return steps, epochs


def train(r: Runner, name: str, cfg: dict, timeout: float) -> tuple[bool, dict]:
    """``onlyif train``; PASS when it exits 0 with exact match on both splits and an exported model."""
    path = WORK / f"{name}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    run = WORK / "runs" / name
    rc, secs, text = r.sh([*CLI, "train", "--config", str(path), "--data", str(DATA), "--out", str(run)], timeout)
    info: dict = {"rc": rc, "wall_s": round(secs, 1)}
    final = {}
    if (run / "run.json").is_file():
        final = json.loads((run / "run.json").read_text()).get("final", {})
    for key in ("train_loss", "test_seen/exact_match", "test_unseen/exact_match", "test_seen/loss", "epoch_seconds"):
        if key in final:
            info[key] = round(final[key], 4)
    steps, epochs = read_metrics(run)
    if len(steps) > 1:  # the first window holds the warm-up (CUDA context, first batches)
        info["tokens_per_s_steps"] = round(statistics.median(s["tokens_per_s"] for s in steps[1:]))
    if epochs:
        info["tokens_per_s_epochs"] = [round(e["tokens_per_s"]) for e in epochs]
        info["steps"] = epochs[-1].get("step")
    ok = rc == 0 and "test_seen/exact_match" in final and (run / "model" / "config.json").is_file()
    if not ok:
        info["tail"] = tail(text)
    return ok, info


def check_env(r: Runner) -> tuple[bool, dict]:
    rc1, _, smi = r.sh(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], 30)
    code = (
        "import torch, transformers, ray, deepspeed, pydantic; print(torch.__version__, torch.version.cuda, "
        "transformers.__version__, ray.__version__, deepspeed.__version__, pydantic.__version__, "
        "torch.cuda.get_device_name(0))"
    )
    rc2, secs, ver = r.sh([sys.executable, "-c", code], 120)
    rc3, _, probe = r.sh([sys.executable, __file__, "probe-ray"], 120)
    info = {"gpu": smi.strip(), "versions": ver.strip().splitlines()[-1:], "import_s": round(secs, 1)}
    info["ray_zero_gpu_worker"] = next((ln for ln in probe.splitlines() if ln.startswith("{")), tail(probe))
    return rc1 == rc2 == rc3 == 0, info


def probe_ray() -> None:
    """What a Ray worker holding no GPU sees on a GPU node (the premise of ``pin_accelerator``)."""
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)

    @ray.remote(num_gpus=0)
    def look() -> dict:
        import torch
        from deepspeed.accelerator import get_accelerator

        return {
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "cuda_available": torch.cuda.is_available(),
            "deepspeed_autodetect": get_accelerator().device_name(),
        }

    print(json.dumps({"cluster_gpus": ray.cluster_resources().get("GPU", 0), **ray.get(look.remote())}))


def check_generate(r: Runner, extra: tuple[str, ...] | list[str] = ()) -> tuple[bool, dict]:
    cmd = [*CLI, "generate", "--config", "jobs/configs/generate_smoke.yaml", "--out", str(DATA), "--overwrite", *extra]
    rc, secs, text = r.sh(cmd, 120)
    ok = rc == 0 and (DATA / "manifest.json").is_file()
    return ok, {"rc": rc, "wall_s": round(secs, 1), **({} if ok else {"tail": tail(text)})}


def check_eval(r: Runner) -> tuple[bool, dict]:
    """``onlyif eval exact-match`` of the ZeRO-2 GPU run: in process on cuda and on cpu, and on 2 actors sharing the
    GPU; the three must agree (fp32 decoding everywhere)."""
    run = WORK / "runs" / "train_gpu_z2_bf16"
    if not (run / "model" / "config.json").is_file():
        return False, {"error": "no model from train_gpu_z2_bf16"}
    both = ["--split", "test_seen", "--split", "test_unseen"]
    modes = {
        "cuda": ["--device", "cuda", *both],
        "cpu": ["--device", "cpu", *both],
        "actors2_cuda": ["--device", "cuda", "--actors", "2", "--split", "test_seen"],
    }
    info: dict = {}
    em: dict[str, dict] = {}
    for label, args in modes.items():
        ev = WORK / f"ev_{label}"
        cmd = [*CLI, "eval", "exact-match", "--model", str(run), "--data", str(DATA), "--out", str(ev)]
        rc, secs, text = r.sh([*cmd, "--max-examples", "500", "--batch-size", "1024", *args], 150)
        info[f"{label}_wall_s"] = round(secs, 1)
        done = sorted(ev.glob("test_*.json")) if rc == 0 else []
        if not done:
            info[f"{label}_tail"] = tail(text)
            continue
        em[label] = {f.stem: json.loads(f.read_text())["exact_match"] for f in done}
        info[f"{label}_exact_match"] = em[label]
    trained = json.loads((run / "run.json").read_text()).get("final", {})
    info["in_training_bf16"] = {s: trained.get(f"{s}/exact_match") for s in ("test_seen", "test_unseen")}
    ok = len(em) == 3 and all(abs(em[m][s] - em["cuda"][s]) <= 0.01 for m in ("cpu", "actors2_cuda") for s in em[m])
    return ok, info


def check_embed(r: Runner) -> tuple[bool, dict]:
    rc, secs, text = r.sh([sys.executable, __file__, "probe-embed", str(WORK / "bert")], 150)
    line = next((ln for ln in text.splitlines() if ln.startswith("{")), None)
    info = json.loads(line) if line else {"tail": tail(text)}
    return rc == 0 and bool(line) and info.get("max_abs_diff", 1) < 1e-3, info


def probe_embed(model_dir: Path) -> None:
    """onlyif.data.embed on cuda vs cpu with a tiny random BERT (WordPiece vocabulary written here, offline)."""
    import numpy as np
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from onlyif.data.embed import embed_texts
    from onlyif.data.mixture_config import EmbedConfig
    from onlyif.ray_utils import init_ray

    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    model_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    (model_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(model_dir / "vocab.txt")).save_pretrained(model_dir)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=256,
    )
    BertModel(cfg).save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    texts = [
        " ".join("".join(rng.choice(list(chars), rng.integers(2, 9))) for _ in range(rng.integers(3, 30)))
        for _ in range(2000)
    ]
    init_ray()  # started before the timings
    out = {}
    for device in ("cuda", "cpu"):
        t = time.monotonic()
        out[device] = embed_texts(texts, EmbedConfig(model=str(model_dir), device=device, actors=2, batch_size=256))
        out[f"{device}_s"] = round(time.monotonic() - t, 1)
    print(
        json.dumps(
            {
                "n": len(texts),
                "dim": int(out["cuda"].shape[1]),
                "cuda_s": out["cuda_s"],
                "cpu_s": out["cpu_s"],
                "max_abs_diff": float(np.abs(out["cuda"] - out["cpu"]).max()),
            }
        )
    )


# H200 bf16 dense peak by the spec sheet (the same as H100 SXM); an 8192^3 bf16 matmul measured 770-800 TFLOP/s there.
PEAK_BF16 = 989e12


def throughput(r: Runner, name: str, batch: int, timeout: float) -> tuple[bool, dict]:
    """Epoch tokens/s of the paper's GPT-2 without step reports on the 200 000-row data, and its MFU: training
    FLOPs per token 6 (12 L d^2 + d V) + 12 L T d (T: mean row length, V: vocabulary) over the bf16 peak."""
    cfg = merged(BASE, {"batch_size": batch, "epochs": 3, "log_every_steps": 0, "eval": {"max_examples": 300}})
    ok, info = train(r, name, cfg, timeout)
    rates, m = info.get("tokens_per_s_epochs", []), cfg["model"]
    run = WORK / "runs" / name
    _, epochs = read_metrics(run)
    if ok and len(rates) > 1 and epochs:
        e = epochs[-1]
        steps = e["step"] - (epochs[-2]["step"] if len(epochs) > 1 else 0)
        seq = e["tokens_per_s"] * e["epoch_seconds"] / max(steps * batch, 1)
        vocab = json.loads((run / "model" / "config.json").read_text())["vocab_size"]
        L, d = m["n_layer"], m["n_embd"]
        flops = 6 * (12 * L * d * d + d * vocab) + 12 * L * seq * d
        best = max(rates[1:])  # the first epoch holds CUDA start-up and the first batches
        info.update(
            mean_row_tokens=round(seq, 1), flops_per_token=round(flops), mfu=round(best * flops / PEAK_BF16, 4)
        )
    return ok, info


def check_codegen(r: Runner) -> tuple[bool, dict]:
    """``onlyif eval code``: the canonical HumanEval solutions in this machine's sandbox (164/164), then a tiny
    random-weight Llama's greedy completions of 16 problems on cuda in process, on cpu, and on 2 Ray Data actors
    sharing the GPU (fp32 everywhere): the three sets of completions are compared."""
    info: dict = {}
    rc, secs, text = r.sh(
        [*CLI, "eval", "code", "--benchmark", "humaneval", "--canonical", "--out", str(WORK / "he")], 120
    )
    summary = WORK / "he" / "summary.json"
    canon = json.loads(summary.read_text()) if rc == 0 and summary.is_file() else {}
    info["canonical"] = {"wall_s": round(secs, 1), "passed": canon.get("passed"), "metrics": canon.get("metrics")}
    info["sandbox"] = canon.get("sandbox")
    if rc:
        info["canonical_tail"] = tail(text)
    model = WORK / "tiny_code"
    rc, _, text = r.sh([sys.executable, __file__, "probe-tiny-code", str(model)], 120)
    if rc:
        return False, {**info, "model_tail": tail(text)}
    done: dict[str, list] = {}
    for label, args in {
        "cuda": ["--device", "cuda"],
        "cpu": ["--device", "cpu"],
        "actors2_cuda": ["--device", "cuda", "--actors", "2"],
    }.items():
        out = WORK / f"code_{label}"
        cmd = [*CLI, "eval", "code", "--benchmark", "humaneval", "--model", str(model), "--out", str(out)]
        rc, secs, text = r.sh([*cmd, "--max-problems", "16", "--max-new-tokens", "96", *args], 180)
        info[f"{label}_wall_s"] = round(secs, 1)
        if rc or not (out / "results.jsonl").is_file():
            info[f"{label}_tail"] = tail(text)
            continue
        rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        done[label] = [(x["task_id"], x.get("completion")) for x in sorted(rows, key=lambda x: x["task_id"])]
    if len(done) == 3:
        info["same_as_cuda"] = {k: sum(a == b for a, b in zip(v, done["cuda"], strict=False)) for k, v in done.items()}
    ok = canon.get("metrics", {}).get("humaneval/pass@1") == 1.0 and len(done) == 3
    return ok and all(n == 16 for n in info["same_as_cuda"].values()), info


def probe_tiny_code(path: Path) -> None:
    """The test suite's tiny random-weight Llama with a chat template (tests/_code_fixtures.py), made here."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests._code_fixtures import tiny_code_model

    tiny_code_model(path, chat=True)
    print(f"saved {path}")


def main() -> int:
    if sys.argv[1:2] == ["probe-ray"]:
        probe_ray()
        return 0
    if sys.argv[1:2] == ["probe-embed"]:
        probe_embed(Path(sys.argv[2]))
        return 0
    if sys.argv[1:2] == ["probe-tiny-code"]:
        probe_tiny_code(Path(sys.argv[2]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, default=420, help="seconds for all checks")
    ap.add_argument("--only", default="", help="comma-separated check names (default: all)")
    args = ap.parse_args()
    os.chdir(Path(__file__).resolve().parents[1])  # the onlyif tree checked (configs are read from it)
    args.out.mkdir(parents=True, exist_ok=True)
    (WORK / "runs").mkdir(parents=True, exist_ok=True)
    r = Runner(args.out, args.budget)
    short = {"epochs": 1, "max_steps": 30, "log_every_steps": 10, "eval": {"max_examples": 300}}
    # Epoch throughput without step reports (each ray.train.report costs ~1.5 s, measured on the H200).
    nolog = merged(BASE, {"epochs": 2, "log_every_steps": 0, "eval": {"max_examples": 300}})
    checks = [
        ("env", 30, lambda: check_env(r)),
        ("generate", 20, lambda: check_generate(r)),
        ("train_gpu_z2_bf16", 60, lambda: train(r, "train_gpu_z2_bf16", BASE, 200)),
        (
            "train_cpu_z2_bf16",
            60,
            lambda: train(
                r,
                "train_cpu_z2_bf16",
                merged(
                    BASE,
                    {
                        "epochs": 1,
                        "max_steps": 10,
                        "eval": {"max_examples": 64},
                        "scaling": {"use_gpu": False, "resources_per_worker": {"CPU": 8}},
                    },
                ),
                150,
            ),
        ),
        ("eval_cuda", 40, lambda: check_eval(r)),
        (
            "train_gpu_z3_bf16",
            45,
            lambda: train(r, "train_gpu_z3_bf16", merged(BASE, {**short, "deepspeed": {"zero_stage": 3}}), 120),
        ),
        (
            "train_gpu_z2_fp16",
            45,
            lambda: train(
                r, "train_gpu_z2_fp16", merged(BASE, {**short, "deepspeed": {"bf16": False, "fp16": True}}), 120
            ),
        ),
        ("embed_cuda", 30, lambda: check_embed(r)),
        (
            "train_gpu_fused_adam",
            90,
            lambda: train(r, "train_gpu_fused_adam", merged(BASE, {**short, "optim": {"torch_adam": False}}), 130),
        ),
        ("train_gpu_z2_bf16_nolog", 50, lambda: train(r, "train_gpu_z2_bf16_nolog", nolog, 120)),
        # 2026-11-29 set (issue 10's GPU generation, issue 11's throughput / MFU / fused Adam / ZeRO-3 offload)
        ("generate_big", 20, lambda: check_generate(r, ["--set", "budget=200000"])),
        ("codegen_cuda", 60, lambda: check_codegen(r)),
        ("throughput_b1024", 60, lambda: throughput(r, "throughput_b1024", 1024, 120)),
        ("throughput_b8192", 60, lambda: throughput(r, "throughput_b8192", 8192, 120)),
        (
            "train_gpu_z3_offload",
            60,
            lambda: train(
                r,
                "train_gpu_z3_offload",
                merged(BASE, {**short, "deepspeed": {"zero_stage": 3, "offload_optimizer": True}}),
                150,
            ),
        ),
    ]
    only = {c for c in args.only.split(",") if c}
    for name, need, fn in checks:
        if not only or name in only:
            r.check(name, need, fn)
    gpu, cpu = (r.results.get(f"train_{d}_z2_bf16", {}).get("tokens_per_s_steps") for d in ("gpu", "cpu"))
    if gpu and cpu:
        r.results["gpu_over_cpu_tokens_per_s"] = {"status": "INFO", "ratio": round(gpu / cpu, 1)}
        print(f"INFO gpu/cpu tokens/s {gpu}/{cpu} = {gpu / cpu:.1f}x")
    (args.out / "summary.json").write_text(json.dumps(r.results, indent=2, sort_keys=True))
    bad = [n for n, v in r.results.items() if v["status"] == "FAIL"]
    print(f"{len(r.results)} checks: " + ", ".join(f"{n} {v['status']}" for n, v in r.results.items()))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
