"""Run folders for the studio's tests, made once per session with the tiny Llama: two finished recipe runs
(``inputs/a.yaml``, ``inputs/b.yaml``: paths relative to the runs folder, where the
studio runs its jobs) that differ in learning rate (``a``, ``b``: the compare page), a curated folder with rejects of two reasons
(``curated``), and the recipe files a test can start a job from (``inputs/``).

``make_runs(root, tiny_llama)`` writes them; conftest's ``studio_root`` fixture is the session's copy (tests
that write under it copy it first).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml


def recipe(name: str, lr: float, max_steps: int = 4) -> dict:
    return {
        "name": name,
        "output_dir": ".",
        "inputs": ["inputs/data.jsonl"],
        "curate": {
            "steps": ["normalize", "empty", {"step": "exact_dedup", "key": "prompt"}],
            "split": {"val": 0.1, "test": 0.2, "seed": 0},
        },
        "train": {
            "model": "inputs/model",
            "task": "causal-lm",
            "method": {"name": "lora", "r": 4, "alpha": 8},
            "data": {"max_length": 64},
            "optim": {"lr": lr, "batch_size": 4, "max_steps": max_steps},
            "bf16": "false",
            "save_every_steps": 1,
            "logging_steps": 1,
        },
        "eval": {"metrics": ["perplexity", "rouge"], "max_new_tokens": 4, "batch_size": 8},
    }


def make_runs(root: Path, tiny_llama: str) -> Path:
    """``root/runs`` (what ``--runs`` points at) holding ``a``, ``b``, ``curated`` and ``inputs/``."""
    from instructkit.data.curate_config import CurateConfig
    from instructkit.data.pipeline import curate
    from instructkit.recipe import Recipe, run_recipe

    runs = root / "runs"
    inputs = runs / "inputs"
    inputs.mkdir(parents=True)
    shutil.copytree(tiny_llama, inputs / "model")
    rows = [{"instruction": f"What is {i} plus {i + 3}?", "output": f"{2 * i + 3}."} for i in range(30)]
    rows.append(rows[0])  # one duplicate for the dedup step to drop
    rows += [{"instruction": "", "output": "empty prompt"}, {"instruction": "  ", "output": "blank"}]
    (inputs / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cwd = os.getcwd()
    os.chdir(runs)  # the recipes name their files relative to the runs folder, as the studio's jobs run there
    try:
        for name, lr in (("a", 5e-3), ("b", 2e-2)):
            path = inputs / f"{name}.yaml"
            path.write_text(yaml.safe_dump(recipe(name, lr)))
            run_recipe(Recipe.from_yaml(path), recipe_path=path, progress=False, log=lambda _: None)
    finally:
        os.chdir(cwd)
    cfg = CurateConfig.from_dict(
        {
            "steps": ["normalize", "empty", {"step": "exact_dedup", "key": "prompt"}],
            "split": {"test": 0.2, "seed": 0},
        }
    )
    curate([inputs / "data.jsonl"], runs / "curated", cfg)
    return runs
