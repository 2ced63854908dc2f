"""``instructkit generate``: make instruction data with a model (Self-Instruct, Evol-Instruct, code tasks
checked by execution), on the bundled model or any OpenAI-compatible server, resumable from its cache."""

from __future__ import annotations

from pathlib import Path

import typer

from instructkit.cli import generate_code, generate_evol
from instructkit.cli import generate_common as g

app = typer.Typer(help="Generate instruction data with a model.", no_args_is_help=True)


@app.command("self-instruct")
def self_instruct(
    out: Path = g.OUT,
    seeds: Path | None = typer.Option(
        None, "--seeds", exists=True, dir_okay=False, help="Seed tasks, any format (default: the bundled 48)."
    ),
    n: int | None = typer.Option(None, "-n", min=1, help="Instructions to make (default 20)."),
    config: Path | None = g.CONFIG,
    set_: list[str] = g.SET,
    backend: str | None = g.BACKEND,
    model: str | None = g.MODEL,
    base_url: str | None = g.BASE_URL,
    api_key: str | None = g.API_KEY,
    concurrency: int | None = g.CONCURRENCY,
    budget_tokens: int | None = g.BUDGET,
    seed: int | None = g.SEED,
    quiet: bool = g.QUIET,
) -> None:
    """Self-Instruct: new instructions from seed tasks, filtered (length, blacklist, novelty), with instances."""
    flags = {
        "seeds": str(seeds) if seeds else None,
        "n": n,
        "backend": g.backend_flags(backend, model, base_url, api_key, concurrency),
        "budget_tokens": budget_tokens,
        "seed": seed,
    }
    g.run_generator("self-instruct", flags, out, config, set_, quiet)


app.command("evol")(generate_evol.command)
app.command("code")(generate_code.command)
