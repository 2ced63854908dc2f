"""``instructkit generate evol``: Evol-Instruct over a file of prompts.

    instructkit generate evol --in prompts.jsonl --rounds 3 -o out/evol [--backend openai --model M ...]

Its own options plus the backend flags every generator shares (``generate_common``); the work is
:mod:`instructkit.generate.evol`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from instructkit.cli import generate_common as g
from instructkit.cli._common import err_console, printable


def command(
    in_file: Path = typer.Option(
        ...,
        "--in",
        "-i",
        help="Prompts to evolve: any format instructkit reads (the first user turn of each).",
    ),
    out_dir: Path = g.OUT,
    rounds: int | None = typer.Option(None, "--rounds", "-m", min=1, help="Evolution rounds M (default 4)."),
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
    config_file: Path | None = g.CONFIG,
    overrides: list[str] = g.SET,
    backend: str | None = g.BACKEND,
    model: str | None = g.MODEL,
    base_url: str | None = g.BASE_URL,
    api_key: str | None = g.API_KEY,
    concurrency: int | None = g.CONCURRENCY,
    budget_tokens: int | None = g.BUDGET,
    seed: int | None = g.SEED,
    quiet: bool = g.QUIET,
) -> None:
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
    data["backend"] = g.backend_flags(backend, model, base_url, api_key, concurrency)
    data["budget_tokens"], data["seed"] = budget_tokens, seed
    g.run_generator("evol", data, out_dir, config_file, overrides, quiet)
