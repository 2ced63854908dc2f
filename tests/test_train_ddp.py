"""Two-process data parallel training on CPU (gloo) through torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from .test_train import DEMO


def _free_port() -> int:
    """A port nobody listens on now: a fixed one collides with another run of this test on the machine."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HERE = Path(__file__).parent


def test_two_process_ddp_equal_weights_rank0_writes(tmp_path: Path, tiny_llama: str) -> None:
    cfg = {
        "model": tiny_llama,
        "task": "causal-lm",
        "method": {"name": "full"},
        "name": "ddp",
        "output_dir": str(tmp_path / "runs"),
        "data": {"train": str(DEMO), "val_share": 0.0, "max_length": 96},
        "optim": {"lr": 5e-3, "batch_size": 2, "max_steps": 4},
        "logging_steps": 1,
        "bf16": "false",
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE.parent)]),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(HERE / "ddp_worker.py"), str(path), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["world"] == r1["world"] == 2 and r0["steps"] == r1["steps"] == 4
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
    run = tmp_path / "runs" / "ddp"
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert steps == [1, 2, 3, 4], "only rank 0 writes metrics.jsonl (no line twice)"
    assert (run / "model" / "instructkit.json").exists() and (run / "config.yaml").exists()
    initial = torch.load(tmp_path / "rank0.pt")["state"]
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    assert any(not torch.equal(initial[k], base[k]) for k in base), "training changed nothing"


pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]  # two torchrun processes
