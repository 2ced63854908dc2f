"""``instructkit report RUN_DIR``: rebuild report.md and report.html from a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from instructkit.cli.common import console, user_errors


def report(
    run_dir: Path = typer.Argument(
        ..., help="A run folder made by `instructkit run`.", exists=True, file_okay=False
    ),
    examples: int = typer.Option(5, "--examples", min=0, help="Changed answers to show."),
) -> None:
    """Rebuild report.md and report.html from a run folder."""
    from instructkit.evaluate.report import build_report

    with user_errors(FileNotFoundError, json.JSONDecodeError):
        md, page = build_report(run_dir, examples=examples)
    console.print(f"report: {escape(str(page))}\n        {escape(str(md))}", highlight=False)
