"""``instructkit run RECIPE.yaml``: data, eval before, train, eval after and the report, as one run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from instructkit.cli.common import console, user_errors


def run(
    recipe: Path = typer.Argument(
        ..., help="Recipe YAML (see recipes/run/quickstart.yaml).", exists=True, dir_okay=False
    ),
    output_dir: str | None = typer.Option(None, "--output-dir", help="Folder that holds run folders."),
    name: str | None = typer.Option(None, "--name", help="Run name (folder under output_dir)."),
    force: list[str] = typer.Option(
        [],
        "--force",
        help="Rerun this stage and the ones after it (generate, template, data, before, train, after, report).",
    ),
) -> None:
    """data -> eval before -> train -> eval after -> report; each stage skipped when its inputs are unchanged."""
    from instructkit.data.base import StepConfigError
    from instructkit.models import ModelNotFoundError
    from instructkit.recipe import STAGES, Recipe, RecipeError, run_recipe
    from instructkit.records import RecordError
    from instructkit.train.checkpoints import CheckpointError
    from instructkit.train.config import ConfigError
    from instructkit.train.methods import MethodError

    for s in force:
        if s not in STAGES:
            raise typer.BadParameter(f"{s!r} is not a stage ({', '.join(STAGES)})", param_hint="--force")
    overrides = {k: v for k, v in (("output_dir", output_dir), ("name", name)) if v is not None}
    with user_errors(
        RecipeError,
        ConfigError,
        CheckpointError,
        StepConfigError,
        MethodError,
        RecordError,
        ModelNotFoundError,
        FileNotFoundError,
    ):
        r = Recipe.from_yaml(recipe, overrides)
        result = run_recipe(
            r, recipe_path=recipe, force=force, log=lambda m: console.print(escape(m), highlight=False)
        )
    from instructkit.evaluate.report import metric_table

    table = Table(title=f"{r.name}: before / after on the {r.eval.split} split")
    for col in ("metric", "before", "after", "difference"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for row in metric_table(result.before, result.after):
        table.add_row(*row)
    console.print(table)
    console.print(f"report: {escape(str(result.report_html))}", highlight=False)
