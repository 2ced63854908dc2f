"""``instructkit generate evol``: Evol-Instruct over a file of prompts.

    instructkit generate evol --in prompts.jsonl --rounds 3 -o out/evol [--backend openai --model M ...]

Its own options; the shared ones (backend flags, ``--config``, ``--set``, ...) come from ``common``; the work is
:mod:`instructkit.generate.evol`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from instructkit.cli.common import err_console, printable
from instructkit.cli.generate.common import generator_command

NAME = "evol"


def evol(
    in_file: Path = typer.Option(
        ...,
        "--in",
        "-i",
        help="Prompts to evolve: any format instructkit reads (the first user turn of each).",
    ),
    rounds: int | None = typer.Option(None, "--rounds", min=1, help="Evolution rounds M (default 4)."),
    operations: str | None = typer.Option(
        None,
        "--operations",
        help="Comma-separated: add_constraints, deepen, concretize, increase_reasoning, complicate_input, "
        "breadth (default all, equally likely).",
    ),
    breadth_share: float | None = typer.Option(
        None,
        "--breadth-share",
        min=0.0,
        max=1.0,
        help="Probability of in-breadth mutation per prompt and round.",
    ),
    max_prompts: int | None = typer.Option(
        None, "--max-prompts", min=1, help="Evolve only the first N prompts."
    ),
    input_format: str | None = typer.Option(
        None, "--format", help="Format of --in; detected when not given."
    ),
) -> dict[str, Any]:
    """Evolve prompts round after round (Evol-Instruct), answer them, and eliminate failed evolutions."""
    if not in_file.is_file():  # before the backend starts: one line naming the path
        why = "is a folder, not a file" if in_file.is_dir() else "no such file"
        err_console.print(
            f"[bold red]error:[/] --in {escape(printable(in_file))}: {why}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2)
    data: dict[str, Any] = {"input": str(in_file)}
    if rounds is not None:
        data["rounds"] = rounds
    if operations is not None:
        data["operations"] = [op.strip() for op in operations.split(",") if op.strip()]
    if breadth_share is not None:
        data["breadth_share"] = breadth_share
    if max_prompts is not None:
        data["max_prompts"] = max_prompts
    if input_format is not None:
        data["input_format"] = input_format
    return data


command = generator_command(NAME, evol)
