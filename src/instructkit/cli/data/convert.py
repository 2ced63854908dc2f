"""``instructkit data convert``, ``show`` and ``inspect``: between formats, a file's records, and the loss
mask of a record for a model."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from instructkit.cli.common import console, printable, user_errors
from instructkit.cli.data.app import app
from instructkit.cli.data.common import (
    DATA_ERRORS,
    FORMAT_HELP,
    ON_ERROR_HELP,
    check_choice,
    default_rejects_path,
    read_all,
    shown,
)
from instructkit.files import (
    OutputError,
    check_outputs,
    check_suffix,
    commit_files,
    container_suffix,
    encode_text,
)
from instructkit.formats import RecordReader, dump_records, format_names, get_format
from instructkit.formats.io import encode_rows, is_rejects_file
from instructkit.records import Record, RecordError


@app.command()
def convert(
    inputs: list[Path] = typer.Argument(
        ...,
        help="One or more input files (JSON, JSONL, Parquet, CoNLL; .gz too).",
        exists=True,
        dir_okay=False,
    ),
    to: str = typer.Option(..., "--to", "-t", help=f"Output format, one of: {', '.join(format_names())}."),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Output file; .jsonl, .json, .parquet or .conll, optionally .gz."
    ),
    fmt: str | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    on_error: str = typer.Option("raise", "--on-error", help=ON_ERROR_HELP),
    rejects: Path | None = typer.Option(
        None,
        "--rejects",
        help="Where rejects go with --on-error skip, a .jsonl file (default: OUTPUT's stem + .rejects.jsonl).",
    ),
) -> None:
    """Convert files to one output format. Prints records read = written + rejected.

    The output and the rejects file are written as one unit: an interrupt leaves both as they were or
    both new. An output or rejects path that is an input or the other output is refused up front.
    """
    check_choice(to, format_names(), "--to")
    check_choice(fmt, format_names(), "--format")
    check_choice(on_error, ["raise", "skip"], "--on-error")
    rejects_path = rejects or default_rejects_path(output)
    rejects_flag = "--rejects" if rejects else "the rejects file"
    with user_errors(*DATA_ERRORS):
        check_outputs(inputs, [("--output", output), (rejects_flag, rejects_path)])
        check_suffix(output, get_format(to).container, "--output")
        if container_suffix(rejects_path) != ".jsonl":
            raise OutputError(f"--rejects {rejects_path}: a rejects file is JSON lines; name a .jsonl file")
        # A run that can reject (skip mode, or --rejects named) always writes its rejects file, empty
        # when nothing was rejected, so a rejects file never describes an earlier run. That used to be
        # done by deleting the old file, which deleted whatever was at the path (the input included);
        # now nothing is deleted, and a file that is not a rejects file is never replaced.
        ours = is_rejects_file(rejects_path) if rejects_path.exists() else None
        write_rejects = rejects is not None or on_error == "skip" or bool(ours)
        if write_rejects and ours is False:
            raise OutputError(
                f"{rejects_flag} {rejects_path} exists and is not a rejects file; refusing to replace it "
                "(name another path with --rejects)"
            )
        records, read_rejects, n_read = read_all(inputs, fmt, on_error)
        rows, dump_rejects = dump_records(records, to, on_error)
        if get_format(to).container == "text":
            payload = encode_text("\n".join(rows), output)
        else:
            payload = encode_rows(rows, output)
        all_rejects = read_rejects + dump_rejects
        files = [(output, payload)]
        if write_rejects:
            files.append((rejects_path, encode_rows(all_rejects, rejects_path)))
        commit_files(files)
    written = len(records) - len(dump_rejects)
    assert n_read == written + len(all_rejects), "record accounting broke"  # guarded by tests
    console.print(
        f"read [bold]{n_read}[/] records: written [green]{written}[/] to {shown(output)} ({to}), "
        f"rejected [{'red' if all_rejects else 'green'}]{len(all_rejects)}[/]"
        + (f" → {shown(rejects_path)}" if all_rejects else "")
    )
    if all_rejects:
        reasons: dict[str, int] = {}
        for r in all_rejects:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        console.print("rejects by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))


def _record_panel(rec: Record, i: int) -> Panel:
    body = Text()
    if rec.messages is not None:
        for m in rec.messages:
            style = {"system": "magenta", "user": "bold", "assistant": "cyan"}[m.role]
            body.append(f"{m.role}: ", style=style)
            body.append(printable(m.content) + "\n")
    elif rec.tokens is not None:
        for tok, tag in zip(rec.tokens, rec.tags or [], strict=True):
            body.append(printable(tok), style="bold green" if tag != "O" else "")
            body.append(f"/{printable(tag)} " if tag != "O" else " ", style="dim")
    else:
        body.append(f"{printable(rec.text)}\n")
        body.append(f"label: {printable(rec.label)}", style="cyan")
    meta = {k: v for k, v in rec.meta.items() if k != "source"}
    return Panel(
        body,
        title=f"#{i} {shown(rec.id)}",
        subtitle=shown(json.dumps(meta, ensure_ascii=False)) if meta else None,
    )


@app.command()
def show(
    path: Path = typer.Argument(..., help="The file to show.", exists=True, dir_okay=False),
    fmt: str | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    n: int = typer.Option(3, "--n", "-n", min=0, help="How many records to print."),
    on_error: str = typer.Option("raise", "--on-error", help=ON_ERROR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON instead of tables."),
) -> None:
    """Print a sample of records and counts: records, kinds, turns, roles, length percentiles."""
    from instructkit.data.stats import summarize

    check_choice(fmt, format_names(), "--format")
    check_choice(on_error, ["raise", "skip"], "--on-error")
    with user_errors(*DATA_ERRORS):
        reader = RecordReader(path, fmt=fmt, on_error=on_error)
        records = list(reader)
    summary = summarize(records)
    summary["format"] = reader.fmt
    summary["read"] = reader.n_read
    summary["rejected"] = len(reader.rejects)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    for i, rec in enumerate(records[:n]):
        console.print(_record_panel(rec, i))
    table = Table(title=f"{shown(path.name)} ({reader.fmt})", show_header=False)
    for key in (
        "read",
        "rejected",
        "records",
        "kinds",
        "tasks",
        "roles",
        "multi_turn",
        "exchanges_per_conversation",
        "words_per_record",
        "labels",
        "entity_tokens",
    ):
        value = summary[key]
        if value in ({}, None):
            continue
        table.add_row(key.replace("_", " "), shown(json.dumps(value, ensure_ascii=False)))
    console.print(table)
    for r in reader.rejects[:5]:
        where = RecordError(
            r["reason"], r["message"], field=r["field"], file=r["file"], line=r["line"], index=r["index"]
        ).where()
        console.print(f"[red]rejected[/] {shown(where)}: {shown(r['message'])} [{r['reason']}]")


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="A file of conversations.", exists=True, dir_okay=False),
    model: str = typer.Option(
        ..., "--model", "-m", help="Model whose tokenizer and chat template to use (alias, folder, hub id)."
    ),
    n: int = typer.Option(3, "--n", "-n", min=0, help="How many samples to print."),
    max_length: int | None = typer.Option(
        None, "--max-length", min=8, help="Truncate to this many tokens (whole turns kept where possible)."
    ),
    chat_template: Path | None = typer.Option(
        None,
        "--chat-template",
        exists=True,
        dir_okay=False,
        help="A Jinja chat template to use instead of the tokenizer's.",
    ),
    fmt: str | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    """Show what training sees: trained tokens highlighted, masked tokens dimmed, and a summary."""
    from instructkit.models import ModelNotFoundError, load_tokenizer
    from instructkit.templates import ChatTemplate, TemplateError

    check_choice(fmt, format_names(), "--format")
    with user_errors(*DATA_ERRORS, ModelNotFoundError, TemplateError):
        records = list(RecordReader(path, fmt=fmt))
        tok = load_tokenizer(model)
        template = ChatTemplate(tok, chat_template.read_text() if chat_template else None, name=model)
        samples, stats, dropped = template.encode_all(records, max_length)
    for i, s in enumerate(samples[:n]):
        text = Text()
        for tid, label in zip(s.input_ids, s.labels, strict=True):
            piece = tok.decode([tid])
            text.append(printable(piece), style="bold black on green" if label != -100 else "dim")
        trunc = " (truncated)" if s.truncated else ""
        console.print(
            Panel(text, title=f"sample {i}: {len(s.input_ids)} tokens, {s.n_trained} trained{trunc}")
        )
    table = Table(title=f"loss masks: {shown(path.name)} with {shown(model)}", show_header=False)
    table.add_row("samples", str(stats.samples))
    table.add_row("kept", str(stats.kept))
    table.add_row("dropped", ", ".join(f"{k}: {v}" for k, v in stats.dropped.items()) or "0")
    table.add_row("truncated", str(stats.truncated))
    table.add_row("tokens", str(stats.tokens))
    table.add_row("trained tokens", f"{stats.trained_tokens} ({stats.trained_share:.1%})")
    console.print(table)
    console.print(
        "[bold black on green]trained[/] tokens are learned; [dim]dimmed[/] tokens are context only (label -100)."
    )
