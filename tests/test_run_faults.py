"""``instructkit run`` under faults (issue #9): a changed training input retrains from scratch instead of
"resuming" the old final checkpoint, and recipe run names cannot escape ``output_dir``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from instructkit.recipe import Recipe, RecipeError, run_recipe

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "examples" / "data" / "demo.jsonl"


def write_recipe(tmp_path: Path, tiny_llama: str, data: Path, lr: float = 5e-3, **top) -> Path:
    recipe = {
        "name": "r",
        "output_dir": str(tmp_path / "runs"),
        "inputs": [str(data)],
        "curate": str(ROOT / "recipes" / "curate" / "quickstart.yaml"),
        "train": {
            "model": tiny_llama,
            "task": "causal-lm",
            "method": {"name": "full"},
            "data": {"max_length": 128},
            "optim": {"lr": 5e-3, "batch_size": 4, "max_steps": 3},
            "bf16": "false",
            "logging_steps": 1,
            "save_every_steps": 3,
        },
        "train_overrides": {"optim.lr": lr},
        "eval": {"metrics": ["perplexity"], "max_new_tokens": 2, "batch_size": 8},
        **top,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def run(path: Path, force: list[str] | None = None) -> tuple[object, list[str]]:
    lines: list[str] = []
    result = run_recipe(
        Recipe.from_yaml(path), recipe_path=path, force=force, progress=False, log=lines.append
    )
    return result, lines


def trained(result) -> tuple[bytes, dict]:
    train_dir = result.run_dir / "train"
    weights = (train_dir / "model" / "trained.safetensors").read_bytes()
    return weights, json.loads((train_dir / "train_metrics.json").read_text())


@pytest.mark.slow
def test_run_retrains_after_a_change(tmp_path: Path, tiny_llama: str) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(DEMO.read_text())
    first, _ = run(write_recipe(tmp_path, tiny_llama, data))
    w1, m1 = trained(first)
    assert m1["steps"] == 3 and m1["train_loss"] > 0

    # a new learning rate: trained again from step 0, not "resumed" at the old final checkpoint
    second, log = run(write_recipe(tmp_path, tiny_llama, data, lr=1e-3))
    w2, m2 = trained(second)
    assert second.ran == ["train", "after", "report"], second.ran
    assert m2["steps"] == 3 and m2["train_loss"] > 0 and w2 != w1
    assert any("optim.lr" in line and "checkpoints" in line for line in log), log

    # replaced input data (same path, other content): curated again and trained again
    data.write_text("".join(DEMO.read_text().splitlines(keepends=True)[5:]))
    third, log = run(write_recipe(tmp_path, tiny_llama, data, lr=1e-3))
    w3, m3 = trained(third)
    assert "data" in third.ran and "train" in third.ran
    assert m3["steps"] == 3 and m3["train_loss"] > 0 and w3 not in (w1, w2)
    assert any("data.train" in line for line in log), log

    # --force train: from scratch again, so a deterministic rerun of the same inputs
    fourth, log = run(write_recipe(tmp_path, tiny_llama, data, lr=1e-3), force=["train"])
    w4, m4 = trained(fourth)
    assert fourth.ran == ["train", "after", "report"], fourth.ran
    assert m4["steps"] == 3 and m4["train_loss"] == pytest.approx(m3["train_loss"], rel=1e-6)
    assert w4 == w3
    assert any("--force" in line for line in log), log


@pytest.mark.parametrize("name", ["../escaped", "../../x", "a/b", ".", "..", ""])
def test_recipe_name_is_one_path_component(tmp_path: Path, name: str) -> None:
    path = write_recipe(tmp_path, "unused", DEMO, name=name)
    with pytest.raises(RecipeError, match="'name'"):
        Recipe.from_yaml(path)


def test_recipe_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "unused", DEMO, name="mine")
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    (tmp_path / "runs" / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(RecipeError, match="output_dir"):
        run_recipe(Recipe.from_yaml(path), recipe_path=path, progress=False, log=lambda m: None)
    assert [p.name for p in (tmp_path / "runs" / "mine").iterdir()] == ["thesis.tex"]


def test_cli_run_refuses_an_escaping_name(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from instructkit.cli import app

    path = write_recipe(tmp_path, "unused", DEMO)
    out = CliRunner().invoke(app, ["run", str(path), "--name", "../../x"])
    assert out.exit_code == 1 and "'name'" in out.output and "Traceback" not in out.output, out.output
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


@pytest.mark.slow
def test_run_resumes_a_killed_train_stage_under_the_same_inputs(tmp_path: Path, tiny_llama: str) -> None:
    """The other side of the rule: a crash mid-training with unchanged inputs still resumes (from the
    step-2 checkpoint here) and ends with the uninterrupted run's weights."""
    from .test_train_faults import killed_at

    def recipe(folder: Path) -> Path:
        folder.mkdir()
        path = write_recipe(folder, tiny_llama, DEMO)
        raw = yaml.safe_load(path.read_text())
        raw["train"]["optim"]["max_steps"] = 4
        raw["train"]["save_every_steps"] = 2
        path.write_text(yaml.safe_dump(raw))
        return path

    reference, _ = run(recipe(tmp_path / "a"))
    path = recipe(tmp_path / "b")
    with killed_at(2):
        run(path)
    resumed, log = run(path)
    assert resumed.ran == ["train", "after", "report"], resumed.ran
    assert any("resuming from" in line and "checkpoint-2" in line for line in log), log
    assert trained(resumed)[0] == trained(reference)[0]


def test_cli_eval_refuses_an_escaping_name(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from instructkit.cli import app

    out = CliRunner().invoke(
        app,
        ["eval", "--model", "unused", "--data", str(DEMO), "-o", str(tmp_path / "e"), "--name", "../../x"],
    )
    assert out.exit_code == 2 and "--name" in out.output and "Traceback" not in out.output, out.output
    assert not (tmp_path / "x.json").exists() and not list(tmp_path.rglob("x.json"))
