"""``instructkit continual RECIPE.yaml [--set key=value]``: train a model on a sequence of tasks round by
round with a continual strategy (naive, replay, ewc, lwf, adapters) and report the forgetting matrix R;
``instructkit continual compare RUN_DIR... [--out PATH]`` puts several runs side by side."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from instructkit.cli.common import console, user_errors


def continual(
    args: list[str] = typer.Argument(
        ...,
        help="RECIPE.yaml to run, or: compare RUN_DIR... to compare finished runs.",
        metavar="RECIPE | compare RUN...",
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a recipe key: --set strategy.ratio=0.2 (repeatable)."
    ),
    out: Path = typer.Option(
        Path("continual-compare"),
        "--out",
        help="compare: output path without suffix (.md and .html are written).",
    ),
) -> None:
    """Continual fine-tuning: each round trains the next task and scores every task seen so far and the next
    one; a finished round with unchanged inputs is skipped, a killed one resumes from its checkpoint."""
    from instructkit.config import ConfigError, parse_overrides
    from instructkit.models import ModelNotFoundError
    from instructkit.records import RecordError
    from instructkit.train.checkpoints import CheckpointError

    errors = (ConfigError, CheckpointError, RecordError, ModelNotFoundError, FileNotFoundError, ValueError)
    if args[0] == "compare":
        from instructkit.continual.report import compare_runs

        if len(args) < 2:
            raise typer.BadParameter("compare needs at least one run folder", param_hint="RUN")
        with user_errors(*errors):
            html, md = compare_runs(args[1:], out)
        console.print(f"comparison: {escape(str(html))} and {escape(str(md))}", highlight=False)
        return
    if len(args) != 1:
        raise typer.BadParameter("give one recipe file (or: compare RUN...)", param_hint="RECIPE")
    recipe_path = Path(args[0])
    if not recipe_path.is_file():
        raise typer.BadParameter(f"{recipe_path} is not a file", param_hint="RECIPE")
    from instructkit.continual.recipe import ContinualRecipeError, read_recipe
    from instructkit.continual.runner import run_continual

    with user_errors(*errors):
        overrides = parse_overrides(set_, ContinualRecipeError)
        recipe = read_recipe(recipe_path, overrides)
        result = run_continual(
            recipe, recipe_path=recipe_path, log=lambda m: console.print(escape(m), highlight=False)
        )
    m = result.matrix
    table = Table(title=f"{recipe.name}: R (score on task after round, 0-100)")
    table.add_column("after")
    for t in m.tasks:
        table.add_column(t, justify="right")
    rows = [("untouched", m.untouched)] + [(f"round {i} ({m.tasks[i]})", r) for i, r in enumerate(m.rounds)]
    for label, row in rows:
        table.add_row(label, *("—" if v is None else f"{v:.1f}" for v in row))
    console.print(table)
    s = result.summary
    console.print(
        "  ".join(
            f"{k} {'—' if s.get(k) is None else f'{s[k]:.1f}'}"
            for k in ("ACC", "BWT", "FWT", "forgetting", "general delta")
        ),
        highlight=False,
    )
    for task, moved in (s.get("not_learned") or {}).items():
        console.print(
            f"[yellow]warning[/yellow]: {escape(task)} did not improve in its own round "
            f"({moved['before']:.1f} before, {moved['after']:.1f} after); check the train settings",
            highlight=False,
        )
    console.print(f"report: {escape(str(result.report_html))}", highlight=False)
