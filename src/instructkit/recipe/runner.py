"""``run_recipe``: open the run folder (checked, ``recipe.yaml`` written, the ledger read), run the stages
that are not fresh, return what ran and the before/after metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from instructkit.config import ConfigError
from instructkit.files import write_text
from instructkit.ledger import Stages
from instructkit.recipe.plan import RecipeRun, check_recipe
from instructkit.recipe.schema import STAGES, Recipe, RecipeError
from instructkit.recipe.stages import (
    after_stage,
    before_stage,
    check_splits,
    data_stage,
    generate_stage,
    report_stage,
    template_stage,
    train_stage,
)


@dataclass
class RunResult:
    run_dir: Path
    ran: list[str]
    skipped: list[str]
    before: dict[str, Any]
    after: dict[str, Any]
    report_html: Path
    report_md: Path


def run_recipe(
    recipe: Recipe,
    *,
    recipe_path: str | Path | None = None,
    force: list[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Run the stages that are not fresh; see the module docstring. Each stage returns the digest of its
    inputs, which the stages downstream of it hash into theirs: a change reruns everything after it."""
    run = _open_recipe_run(recipe, recipe_path, force or [], progress, log)
    d_generate = generate_stage(run, recipe_path)
    d_template = template_stage(run, recipe_path)
    d_data = data_stage(run, *(d for d in (d_generate, d_template) if d))
    check_splits(run)
    d_before = before_stage(run, d_data)
    d_train = train_stage(run, d_data)
    d_after = after_stage(run, d_train)
    html, md = report_stage(run, d_before, d_after)
    before = json.loads((run.run_dir / "eval" / "before.json").read_text())["metrics"]
    after = json.loads((run.run_dir / "eval" / "after.json").read_text())["metrics"]
    return RunResult(run.run_dir, run.stages.ran, run.stages.skipped, before, after, html, md)


def _open_recipe_run(
    recipe: Recipe,
    recipe_path: str | Path | None,
    force: list[str],
    progress: bool,
    log: Callable[[str], None],
) -> RecipeRun:
    """Check the run folder and the whole recipe before anything is written, then write ``recipe.yaml``
    and read ``stages.json``, forgetting the forced stages and those after them."""
    from instructkit.train.rundir import RECIPE_MARKERS, check_run_folder

    run_dir = recipe.run_dir
    problem = check_run_folder(run_dir, RECIPE_MARKERS)
    if problem:
        raise RecipeError(f"output_dir/name: {problem}")
    curate_cfg, cfg, inputs = check_recipe(recipe, recipe_path)  # all of it, before anything is written
    if (run_dir / "stages.json").exists():
        Stages(run_dir, RecipeError)  # a damaged stages.json stops the run before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(recipe.to_dict(), sort_keys=False)
    saved = run_dir / "recipe.yaml"
    if not _same_recipe(saved, recipe):  # rewritten only when it changed: its time says when
        write_text(text, saved)
    stages = Stages(run_dir, RecipeError)
    for s in force:
        stages.forget(STAGES[STAGES.index(s) :])
    base = Path(recipe_path).parent if recipe_path else Path.cwd()
    return RecipeRun(recipe, curate_cfg, cfg, inputs, stages, force, progress, log, base)


def _same_recipe(saved: Path, recipe: Recipe) -> bool:
    """Whether ``saved`` (a run folder's recipe.yaml) holds ``recipe``, read with today's defaults: a key
    added to the recipe since (with its default) does not make an old run's recipe look changed."""
    if not saved.is_file():
        return False
    try:
        return Recipe.from_yaml(saved).to_dict() == recipe.to_dict()
    except (ConfigError, OSError, yaml.YAMLError):
        return False
