"""``instructkit generate evol``: Evol-Instruct over a file of prompts.

    instructkit generate evol --in prompts.jsonl --rounds 3 -o out/evol [--backend openai --model M ...]

Only this subcommand's own options are parsed here; the ``generate`` group adds the backend flags
(--backend, --model, --base-url, --api-key, --concurrency, --budget-tokens, --seed) and prints the summary
table. The work is :mod:`instructkit.generate.evol`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def command(
    in_file: Path = typer.Option(
        ...,
        "--in",
        "-i",
        help="Prompts to evolve: any format instructkit reads (the first user turn of each).",
    ),
    out_dir: Path = typer.Option(
        ..., "--output-dir", "-o", help="Writes records, rejects, card and cache here."
    ),
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
    config_file: Path | None = typer.Option(None, "--config", help="YAML with any EvolConfig key."),
    overrides: list[str] = typer.Option([], "--set", help="key=value for any config key (repeatable)."),
) -> None:
    """Evolve prompts round after round (Evol-Instruct), answer them, and eliminate failed evolutions."""
    from instructkit.cli.generate_common import run_generator

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
    run_generator("evol", data, out_dir, config_file, overrides)
