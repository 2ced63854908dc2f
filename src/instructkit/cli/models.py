"""``instructkit models``: list the bundled models and build their cache."""

from __future__ import annotations

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from instructkit.cli.common import console, user_errors
from instructkit.models import BUNDLED, ModelNotFoundError, cache_root, describe, prepare

app = typer.Typer(
    help="List and prepare models (bundled aliases, local folders, hub ids).", no_args_is_help=True
)


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def _params(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f}M"


@app.command("list")
def list_models() -> None:
    """Show each bundled alias: kind, installed, cached, size and parameter count."""
    table = Table(title=f"bundled models (cache: {cache_root()})")
    for col in ("alias", "kind", "installed", "cached", "package size", "cache size", "params"):
        table.add_column(col, no_wrap=col == "alias")
    missing = []
    for alias in BUNDLED:
        d = describe(alias)
        if not d["installed"]:
            missing.append(d["install"])
        table.add_row(
            alias,
            d["kind"],
            "[green]yes[/]" if d["installed"] else "[red]no[/]",
            "[green]yes[/]" if d["cached"] else "[yellow]no[/]",
            _size(d["source_bytes"]),
            _size(d["cache_bytes"]),
            _params(d["params"]),
        )
    console.print(table)
    for command in missing:
        console.print(f"[yellow]not installed:[/] {command}", highlight=False)
    console.print("Any local model folder or hub id (org/name) works too wherever a model NAME is asked for.")


@app.command("prepare")
def prepare_cmd(
    name: str = typer.Argument(..., help=f"Bundled alias: {', '.join(BUNDLED)}."),
    force: bool = typer.Option(False, "--force", help="Rebuild the cache even when it is up to date."),
) -> None:
    """Build the cache for a bundled model (the GGUF is dequantized once, saved as safetensors)."""
    with (
        user_errors(ModelNotFoundError),
        Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as bar,
    ):
        bar.add_task(f"preparing {name}", total=None)
        path = prepare(name, force=force)
    d = describe(name)
    console.print(f"[green]ready[/] {name}: {path} ({_params(d['params'])} parameters)")
