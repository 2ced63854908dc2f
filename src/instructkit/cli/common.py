"""Shared CLI helpers: one console, one way to report a library error, one way to show data text.

Errors reach the user as one line on stderr, never a traceback:
- the library's expected errors (a bad file, key or model) through :func:`user_errors` in each command:
  ``error: <what, naming the file, line, field or config key>``, exit code 1;
- an operating-system error naming a file (no such file, is a folder, permission denied) that a command
  did not expect: the same one line;
- anything else (a bug, an error of a library underneath) through :func:`report_unexpected`, called by
  the root command group for every command: one line with the exception, and the path of the full
  traceback saved under instructkit's cache (``$INSTRUCTKIT_CACHE/errors/``), exit code 1.
``instructkit --debug COMMAND`` (or ``INSTRUCTKIT_DEBUG=1``) prints the traceback as well.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


_debug = {"on": False}


def set_debug(on: bool) -> None:
    """``instructkit --debug`` (or ``INSTRUCTKIT_DEBUG=1``): print tracebacks; set by the root command."""
    _debug["on"] = on


def debug_enabled() -> bool:
    return _debug["on"]


def error_line(message: object) -> None:
    """One red ``error:`` line on stderr (the message's first line: a library's multi-line text stays
    one line here; the saved traceback has the rest)."""
    text = " ".join(str(message).split("\n")[:1]).strip() or "(no message)"
    err_console.print(
        f"[bold red]error:[/] {escape(printable(text))}", markup=True, highlight=False, soft_wrap=True
    )


@contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn the library's expected errors into one red line and exit code 1 (no traceback; with
    ``--debug``, the traceback first)."""
    try:
        yield
    except kinds as e:
        if debug_enabled():
            traceback.print_exc(file=sys.stderr)
        err_console.print(
            f"[bold red]error:[/] {escape(printable(e))}", markup=True, highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None


def _os_error_line(e: OSError) -> str | None:
    """``PATH: reason`` for an OSError that names its file, else None."""
    if e.filename is None:
        return None
    why = (e.strerror or type(e).__name__).rstrip(".")
    why = {"Is a directory": "is a folder, not a file", "Not a directory": "is not a folder"}.get(why, why)
    return f"{e.filename}: {why[:1].lower()}{why[1:]}"


def traceback_folder() -> Path:
    from instructkit.models import cache_root

    return cache_root() / "errors"


def report_unexpected(e: BaseException, command: str) -> None:
    """One line for an exception no command expected, with the path of its saved traceback."""
    if isinstance(e, BrokenPipeError):  # `instructkit ... | head`: the reader left; nothing to report
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter's exit flush must not fail
        return
    if isinstance(e, OSError) and (line := _os_error_line(e)) is not None:
        if debug_enabled():
            traceback.print_exception(e, file=sys.stderr)
        error_line(line)
        return
    text = "".join(traceback.format_exception(e))
    if debug_enabled():
        sys.stderr.write(text)
    first = (str(e).strip().splitlines() or [""])[0]
    what = f"{type(e).__name__}: {first}" if first else type(e).__name__
    try:
        folder = traceback_folder()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = folder / f"{stamp}-{os.getpid()}.txt"
        from instructkit.files import write_text

        write_text(f"instructkit {command}\n{text}", path)
        where = f"traceback saved to {path}; `instructkit --debug ...` prints it"
    except Exception:  # the cache cannot be written: say so, the line still stands
        where = "the traceback could not be saved; `instructkit --debug ...` prints it"
    error_line(f"unexpected {what} ({where})")


class _WarningLine(logging.Handler):
    """The library's warnings (``logging.getLogger("instructkit")``) as one yellow line each."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(
            f"[yellow]warning:[/] {escape(printable(record.getMessage()))}", markup=True, highlight=False
        )


def show_library_warnings() -> None:
    logger = logging.getLogger("instructkit")
    if not any(isinstance(h, _WarningLine) for h in logger.handlers):
        # the handler's level only: the loggers' own levels stay as their modules set them (serve logs INFO)
        logger.addHandler(_WarningLine(level=logging.WARNING))
