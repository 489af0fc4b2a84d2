"""GPU-machine code paths that a CPU-only machine can still check."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

# DeepSpeed's accelerator as a worker of a GPU node sees it: CUDA looks available (Ray leaves a node's GPUs visible
# to workers that hold none).
_PROBE = """
import torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
from onlyif.train.loop import pin_accelerator
pin_accelerator(use_gpu={use_gpu})
from deepspeed.accelerator import get_accelerator
print(get_accelerator().device_name())
"""


@pytest.mark.parametrize(("use_gpu", "expected"), [(False, "cpu"), (True, "cuda")])
def test_cpu_workers_pin_deepspeed_to_cpu_on_gpu_nodes(use_gpu, expected):
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    cmd = [sys.executable, "-c", _PROBE.format(use_gpu=use_gpu)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_eval_device_without_cuda():
    from onlyif.errors import OnlyIfError
    from onlyif.lm.models import resolve_device

    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(OnlyIfError, match="--device cuda: no CUDA device"):
        resolve_device("cuda")
