"""What the ``instructkit data`` commands share: the format and on-error help, the errors shown as one line,
reading several inputs with their rejects, and the default paths beside an output."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from instructkit.cli.common import err_console, printable
from instructkit.files import (
    OutputError,
    WriteError,
)
from instructkit.formats import RecordReader, format_names
from instructkit.records import Record, RecordError

FORMAT_HELP = f"Input format; detected from the content when not given. One of: {', '.join(format_names())}."
ON_ERROR_HELP = "What a bad record does: 'raise' stops with file, line and field; 'skip' writes it to the rejects file with its reason."
# What a data command reports as one red line instead of a traceback.
DATA_ERRORS = (RecordError, FileNotFoundError, OutputError, WriteError)


def shown(value: object) -> str:
    """Data or a path for the console: control characters as \\xNN, rich markup escaped."""
    return escape(printable(value))


def check_choice(value: str | None, choices: list[str], flag: str) -> None:
    if value is not None and value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of: {', '.join(choices)}", param_hint=flag)


def read_all(paths: list[Path], fmt: str | None, on_error: str) -> tuple[list[Record], list[dict], int]:
    records: list[Record] = []
    rejects: list[dict] = []
    n_read = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("reading", total=len(paths))
        for p in paths:
            bar.update(task, description=f"reading {p.name}")
            reader = RecordReader(p, fmt=fmt, on_error=on_error)
            records.extend(reader)
            rejects.extend(reader.rejects)
            n_read += reader.n_read
            bar.advance(task)
    return records, rejects, n_read


def sibling(out: Path, suffix: str) -> Path:
    """OUT's stem (every suffix dropped) + ``.suffix``, beside it: out.jsonl.gz -> out.rejects.jsonl."""
    name = out.name
    for part in reversed(out.suffixes):
        name = name[: -len(part)]
    return out.with_name(f"{name}.{suffix}")


def default_rejects_path(out: Path) -> Path:
    return sibling(out, "rejects.jsonl")
