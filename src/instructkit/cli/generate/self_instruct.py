"""``instructkit generate self-instruct --seeds FILE -n N -o DIR``: Self-Instruct; the work is
:mod:`instructkit.generate.self_instruct`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from instructkit.cli.generate.common import generator_command

NAME = "self-instruct"


def self_instruct(
    seeds: Path | None = typer.Option(
        None, "--seeds", exists=True, dir_okay=False, help="Seed tasks, any format (default: the bundled 48)."
    ),
    n: int | None = typer.Option(None, "-n", min=1, help="Instructions to make (default 20)."),
) -> dict[str, Any]:
    """Self-Instruct: new instructions from seed tasks, filtered (length, blacklist, novelty), with instances."""
    return {"seeds": str(seeds) if seeds else None, "n": n}


command = generator_command(NAME, self_instruct)
