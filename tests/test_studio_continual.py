"""A continual job started through the studio's jobs API runs ``instructkit continual`` to its end: its
events walk the rounds, and the runs table and run page then show it as a finished continual run with the
matrix's summary metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from instructkit.formats import write_records
from instructkit.records import Record
from tests.test_studio_jobs import client, follow

pytestmark = pytest.mark.slow


def _tasks(folder: Path) -> None:
    sentiment = [
        Record.chat([{"role": "user", "content": f"Label the sentiment: review {i} was {'great' if i % 2 else 'awful'}."},
                     {"role": "assistant", "content": "positive" if i % 2 else "negative"}], id=f"s{i}")
        for i in range(16)
    ]  # fmt: skip
    sums = [
        Record.chat([{"role": "user", "content": f"What is {i} plus {i}?"},
                     {"role": "assistant", "content": str(2 * i)}], id=f"m{i}")
        for i in range(16)
    ]  # fmt: skip
    write_records(sentiment[:12], folder / "sentiment.jsonl")
    write_records(sentiment[12:], folder / "sentiment_test.jsonl")
    write_records(sums[:12], folder / "sums.jsonl")
    write_records(sums[12:], folder / "sums_test.jsonl")


def test_a_continual_job_runs_its_rounds_and_shows_as_a_continual_run(
    studio_root: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(studio_root, runs)
    _tasks(runs / "inputs")
    recipe = {
        "name": "cl",
        "output_dir": ".",
        "model": "inputs/model",
        "task": "causal-lm",
        "method": {"name": "lora", "r": 4, "alpha": 8},
        "strategy": {"name": "naive"},
        "train": {"optim": {"lr": 5e-3, "batch_size": 4, "max_steps": 2}, "data": {"val_share": 0, "max_length": 64},
                  "save_every_steps": 2, "logging_steps": 1, "bf16": "false"},
        "tasks": [
            {"name": "sentiment", "train": "inputs/sentiment.jsonl", "test": "inputs/sentiment_test.jsonl",
             "metric": "accuracy", "labels": ["positive", "negative"], "max_new_tokens": 4},
            {"name": "sums", "train": "inputs/sums.jsonl", "test": "inputs/sums_test.jsonl", "metric": "rouge",
             "max_new_tokens": 4},
        ],
        "seed": 0,
    }  # fmt: skip
    with client(runs) as c:
        r = c.post("/api/jobs", json={"kind": "continual", "config": recipe})
        assert r.status_code == 200, r.text
        events = follow(c, r.json()["id"])
        last = events[-1]
        assert last["event"] == "end" and last["status"] == "done", last.get("log_tail")
        assert [s["name"] for s in last["stages"]] == ["round-base", "round-0", "round-1"]
        assert all(s["state"] == "done" for s in last["stages"])
        rows = {row["path"]: row for row in c.get("/api/runs").json()["runs"]}
        page = c.get("/api/run", params={"path": "cl"}).json()
    matrix = json.loads((runs / "cl" / "matrix.json").read_text())
    row = rows["cl"]
    assert (row["kind"], row["status"]) == ("continual", "done")
    numbers = {k: v for k, v in matrix["summary"].items() if isinstance(v, int | float)}
    assert numbers and {k: v["after"] for k, v in row["metrics"].items()} == numbers
    assert [s["name"] for s in page["stages"]][:3] == ["round-base", "round-0", "round-1"]
