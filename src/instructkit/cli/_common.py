"""Shared CLI helpers: one console, one way to report a library error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


@contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn the library's expected errors into one red line and exit code 1 (no traceback)."""
    try:
        yield
    except kinds as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False)
        raise typer.Exit(1) from None
