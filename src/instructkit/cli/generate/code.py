"""``instructkit generate code --seeds FILE -n N -o DIR``: Python exercises written by a model, kept only when
the sandbox shows that the solution passes its tests and the tests fail on a stub.

Only options given on the command line go into the config, so a ``--config`` file's values and the config's
defaults apply to the rest; the shared options (backend flags, ``--config``, ``--set``, ...) come from
``common``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from instructkit.cli.generate.common import generator_command

NAME = "code"


def code(
    seeds: Path | None = typer.Option(
        None,
        "--seeds",
        exists=True,
        dir_okay=False,
        help="Seed exercises (any format instructkit reads; tests in meta.tests). Default: the bundled 18.",
    ),
    n: int | None = typer.Option(None, "-n", "--n", min=1, help="Samples to keep (default 20)."),
    seeds_format: str | None = typer.Option(
        None, "--seeds-format", help="Format of --seeds; detected when not given."
    ),
    shots: int | None = typer.Option(None, "--shots", min=1, help="Exercises shown per request (default 3)."),
    per_round: int | None = typer.Option(None, "--per-round", min=1, help="Requests per round (default 8)."),
    max_rounds: int | None = typer.Option(None, "--max-rounds", min=1, help="Most rounds (default 20)."),
    temperature: float | None = typer.Option(
        None, "--temperature", min=0.0, help="Sampling temperature (default 0.7)."
    ),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", min=1, help="Longest reply in tokens (default 768)."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.0, help="Seconds each program may run in the sandbox (default 5)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Sandbox workers (default: the CPU count)."
    ),
    stub: list[str] | None = typer.Option(
        None, "--stub", help="Stub the tests must fail on: return_none, raise (repeatable; default both)."
    ),
    no_decontaminate: bool = typer.Option(
        False, "--no-decontaminate", help="Keep samples that share an n-gram with HumanEval."
    ),
    decontaminate_file: list[Path] | None = typer.Option(
        None,
        "--decontaminate-file",
        exists=True,
        dir_okay=False,
        help="Another benchmark file to decontaminate against (repeatable).",
    ),
) -> dict[str, Any]:
    """Generate Python exercises (task, solution, assert tests) checked by execution in the sandbox."""
    return {
        "seeds": str(seeds) if seeds is not None else None,
        "n": n,
        "seeds_format": seeds_format,
        "shots": shots,
        "per_round": per_round,
        "max_rounds": max_rounds,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "timeout": timeout,
        "workers": workers,
        "stubs": list(stub) if stub else None,
        "decontaminate": [] if no_decontaminate else None,
        "decontaminate_files": [str(p) for p in decontaminate_file] if decontaminate_file else None,
    }


command = generator_command(NAME, code)
