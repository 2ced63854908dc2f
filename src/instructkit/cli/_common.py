"""Shared CLI helpers: one console, one way to report a library error, one way to show data text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

# C0 controls but newline and tab, DEL, and C1 controls (U+0080-U+009F: 0x9B alone starts a CSI
# sequence on many terminals). Printed raw, an ESC in a record can clear the screen, set the window
# title or hide text; rich passes them through.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``text`` with terminal control characters shown as ``\\xNN`` (newline and tab kept)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


@contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn the library's expected errors into one red line and exit code 1 (no traceback)."""
    try:
        yield
    except kinds as e:
        err_console.print(f"[bold red]error:[/] {escape(printable(e))}", markup=True, highlight=False)
        raise typer.Exit(1) from None
