"""The stage digests in ``stages.json`` are what makes a rerun of `instructkit run` skip finished stages. They
are pinned here to the values the code that wrote existing run folders computes (issue #10 split
`run_recipe` into one function per stage), so a change that would rerun every user's stages fails a test
instead of passing unnoticed. A deliberate change of what a stage hashes updates the pins and says so."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from instructkit.recipe import Recipe, run_recipe

# Computed by the pre-split `run_recipe` (commit 4c3fe7f) for the run below. "after" and "report" hash what
# training and evaluation wrote (weights, eval/after.json with its timing), which differ between machines
# and runs, so the test recomputes those two from their parts instead.
PINNED = {
    "data": "9f2c2e78d39cf757b6bb25197a75ef775ff23b70a14a172d11a0d2cfe6644ff5",
    "before": "e639b8df3aa182db198f685266d1b710868198b673cb8d47dfe4784c51125676",
    "train": "69f92f23d80f960c936f4d677c2389b1bc791d34eb9aa2bde79f930e2e3ee208",
}
EVAL_SETTINGS = {  # the recipe's eval section with every default filled in, as the digests hash it
    "split": "test",
    "metrics": ["perplexity"],
    "batch_size": 8,
    "max_length": 512,
    "max_new_tokens": 2,
    "labels": None,
    "examples": 5,
}


def write_inputs(folder: Path, tiny_llama: str) -> Path:
    """The model, data and recipe, named by paths relative to ``folder`` so the digests do not depend on
    where the test runs; the data and the curate steps are written here so no shipped file moves them."""
    shutil.copytree(tiny_llama, folder / "model")
    rows = [{"instruction": f"What is {i} plus {i + 3}?", "output": f"{2 * i + 3}."} for i in range(30)]
    rows.append(rows[0])  # one duplicate for the dedup step to drop
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "r",
        "output_dir": "runs",
        "inputs": ["data.jsonl"],
        "curate": {
            "steps": ["normalize", "empty", {"step": "exact_dedup", "key": "prompt"}],
            "split": {"val": 0.1, "test": 0.2, "seed": 0},
        },
        "train": {
            "model": "model",
            "task": "causal-lm",
            "method": {"name": "lora", "r": 4, "alpha": 8},
            "data": {"max_length": 64},
            "optim": {"lr": 5e-3, "batch_size": 4, "max_steps": 1},
            "bf16": "false",
            "save_every_steps": 1,
        },
        "eval": {"metrics": ["perplexity"], "max_new_tokens": 2, "batch_size": 8},
    }
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return folder / "recipe.yaml"


def digest(*parts: object) -> str:
    """The stage digest as stages.json records it: each part as sorted-key JSON, NUL-separated."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(sha256(p).encode())
    return h.hexdigest()


@pytest.mark.slow
def test_stage_digests_match_the_pinned_ones(
    tmp_path: Path, tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_inputs(tmp_path, tiny_llama)
    lines: list[str] = []
    first = run_recipe(Recipe.from_yaml(path.name), recipe_path=path.name, progress=False, log=lines.append)
    assert first.ran == ["data", "before", "train", "after", "report"]
    done = json.loads(Path("runs/r/stages.json").read_text())
    got = {stage: entry["inputs"] for stage, entry in done.items()}
    assert {k: got[k] for k in PINNED} == PINNED, "a stage digest changed: every existing run would rerun it"

    run = Path("runs/r")
    split = run / "data" / "test.jsonl"
    assert got["after"] == digest("after", got["train"], tree_sha256(run / "train" / "model"), EVAL_SETTINGS,
                                  sha256(split))  # fmt: skip
    assert got["report"] == digest("report", got["before"], got["after"], sha256(run / "eval" / "after.json"))
    assert [line for line in lines if not line.startswith(("[before] {", "[after] {"))] == [
        f"[{stage}] running" for stage in ("data", "before", "train", "after", "report")
    ]

    again: list[str] = []
    second = run_recipe(Recipe.from_yaml(path.name), recipe_path=path.name, progress=False, log=again.append)
    assert second.ran == [] and again == [f"[{s}] up to date, skipped" for s in second.skipped]
    assert second.before == first.before and second.after == first.after
