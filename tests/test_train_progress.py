"""Training's progress where output is not a terminal: plain lines with the step, the loss (a dash before
the first log, never "nan") and what is left, so a log file shows a long run is alive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from instructkit.cli import app


def test_a_log_file_gets_plain_progress_lines(
    tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from instructkit.train import callbacks

    monkeypatch.setattr(callbacks, "PLAIN_EVERY_S", 0.0)
    rows = [{"instruction": f"Add {i} and {i}.", "output": str(2 * i)} for i in range(12)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "name": "p", "output_dir": str(tmp_path / "runs"), "model": tiny_llama, "task": "causal-lm",
        "method": {"name": "lora", "r": 2, "alpha": 4}, "data": {"train": str(tmp_path / "d.jsonl"), "max_length": 128},
        "optim": {"lr": 1e-3, "batch_size": 4, "max_steps": 3}, "bf16": "false",
    }  # fmt: skip
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["train", str(tmp_path / "p.yaml")])
    assert res.exit_code == 0, res.output
    lines = [x for x in res.output.splitlines() if x.startswith("training step ")]
    assert [x.split(",")[0] for x in lines] == ["training step 1/3", "training step 2/3", "training step 3/3"]
    assert "loss –" in lines[0] and "nan" not in res.output and "min left" in lines[-1]


def test_samples_left_out_are_said_before_training(tiny_llama: str, tmp_path: Path) -> None:
    import re

    rows = [{"instruction": "Say it." + (" very" * 200 if i % 2 else ""), "output": "ok"} for i in range(20)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "name": "p", "output_dir": str(tmp_path / "runs"), "model": tiny_llama, "task": "causal-lm",
        "method": {"name": "lora", "r": 2, "alpha": 4},
        "data": {"train": str(tmp_path / "d.jsonl"), "max_length": 96, "val_share": 0.2},
        "optim": {"lr": 1e-3, "batch_size": 4, "max_steps": 1}, "bf16": "false",
    }  # fmt: skip
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["train", str(tmp_path / "p.yaml")])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    said = re.findall(
        r"left out (\d+) of (\d+) (training|validation) samples: \d+ prompt_exceeds_max_length \(raise data\.max_length\)",
        out,
    )
    # the seeded 20% validation share drew 4 short rows; the 16 training rows hold the 10 long ones
    assert said == [("10", "16", "training")], res.output
    assert out.index("left out") < out.index("training ━")  # said before training starts


def test_no_sample_left_is_one_line_naming_max_length(tiny_llama: str, tmp_path: Path) -> None:
    rows = [{"instruction": "Say it." + " very" * 200, "output": "ok"} for _ in range(6)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "name": "p", "output_dir": str(tmp_path / "runs"), "model": tiny_llama, "task": "causal-lm",
        "method": {"name": "lora", "r": 2, "alpha": 4}, "data": {"train": str(tmp_path / "d.jsonl"), "max_length": 96},
        "optim": {"max_steps": 1}, "bf16": "false",
    }  # fmt: skip
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["train", str(tmp_path / "p.yaml")])
    out = " ".join(res.output.split())
    assert res.exit_code != 0 and "no training samples left" in out and "raise data.max_length" in out
    assert "unexpected" not in out and "Traceback" not in out
