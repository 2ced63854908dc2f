"""``instructkit data``: convert between formats, show a file, inspect loss masks."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from instructkit.cli.common import console, err_console, printable, user_errors
from instructkit.files import (
    OutputError,
    WriteError,
    check_outputs,
    check_suffix,
    commit_files,
    container_suffix,
    encode_text,
)
from instructkit.formats import RecordReader, dump_records, format_names, get_format
from instructkit.formats.io import encode_rows, is_rejects_file
from instructkit.records import Record, RecordError

app = typer.Typer(help="Read, convert, summarize and inspect instruction data.", no_args_is_help=True)

FORMAT_HELP = f"Input format; detected from the content when not given. One of: {', '.join(format_names())}."
ON_ERROR_HELP = "What a bad record does: 'raise' stops with file, line and field; 'skip' writes it to the rejects file with its reason."
# What a data command reports as one red line instead of a traceback.
DATA_ERRORS = (RecordError, FileNotFoundError, OutputError, WriteError)


def shown(value: object) -> str:
    """Data or a path for the console: control characters as \\xNN, rich markup escaped."""
    return escape(printable(value))


def _check_choice(value: str | None, choices: list[str], flag: str) -> None:
    if value is not None and value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of: {', '.join(choices)}", param_hint=flag)


def _read_all(paths: list[Path], fmt: str | None, on_error: str) -> tuple[list[Record], list[dict], int]:
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


def _sibling(out: Path, suffix: str) -> Path:
    """OUT's stem (every suffix dropped) + ``.suffix``, beside it: out.jsonl.gz -> out.rejects.jsonl."""
    name = out.name
    for part in reversed(out.suffixes):
        name = name[: -len(part)]
    return out.with_name(f"{name}.{suffix}")


def _default_rejects_path(out: Path) -> Path:
    return _sibling(out, "rejects.jsonl")


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
    _check_choice(to, format_names(), "--to")
    _check_choice(fmt, format_names(), "--format")
    _check_choice(on_error, ["raise", "skip"], "--on-error")
    rejects_path = rejects or _default_rejects_path(output)
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
        records, read_rejects, n_read = _read_all(inputs, fmt, on_error)
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

    _check_choice(fmt, format_names(), "--format")
    _check_choice(on_error, ["raise", "skip"], "--on-error")
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

    _check_choice(fmt, format_names(), "--format")
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


@app.command()
def curate(
    inputs: list[str] = typer.Argument(
        ...,
        help="One or more input files, any supported format; with --engine ray also URLs (s3://, gs://, "
        "file://), one task per file.",
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Output folder: train/val/test files, rejects.jsonl, card.json, card.md. Replaced as a whole; "
        "refused when it holds an input or files curate did not write.",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        exists=True,
        dir_okay=False,
        help="A curate YAML (steps, split, output); the default pipeline when not given.",
    ),
    num_proc: int | None = typer.Option(
        None, "--num-proc", min=1, help="Worker processes for per-record steps (overrides the config)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Split seed (overrides the config)."),
    fmt: str | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    on_error: str | None = typer.Option(
        None,
        "--on-error",
        help="Bad input records: 'skip' (the default for curate) rejects them with their reason; 'raise' stops.",
    ),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="local (this machine) or ray (a Ray cluster; the same output byte for byte). Overrides the config.",
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="With --engine ray: the cluster to join (auto, HOST:PORT, ray://HOST:PORT); none starts a "
        "local cluster for the run.",
    ),
) -> None:
    """Clean, deduplicate, decontaminate and split; write a dataset card that accounts for every record.

    Exit codes: 0 curated; 1 an error (config, input, output; one line, nothing written); 2 a bad option
    or a missing input; 3 curated, but no record was kept (an empty input, one that is not UTF-8 text,
    every record rejected): the card, the rejects and the empty splits are written, and one line says so.
    """
    from instructkit.config import ConfigError
    from instructkit.data.base import StepFailed
    from instructkit.data.curate_config import CurateConfig
    from instructkit.data.pipeline import curate as run_curate
    from instructkit.data.pipeline import nothing_kept

    _check_choice(fmt, format_names(), "--format")
    _check_choice(on_error, ["raise", "skip"], "--on-error")
    _check_choice(engine, ["local", "ray"], "--engine")
    for p in inputs:
        if "://" not in p and not Path(p).is_file():
            raise typer.BadParameter(f"{p}: no such file", param_hint="'INPUTS...'")
    with user_errors(ConfigError, StepFailed, *DATA_ERRORS):
        cfg = CurateConfig.from_yaml(config) if config else CurateConfig()
        if num_proc is not None:
            cfg.num_proc = num_proc
        if seed is not None:
            cfg.split.seed = seed
        if fmt is not None:
            cfg.input_format = fmt
        if on_error is not None:
            cfg.on_error = on_error
        if engine is not None:
            cfg.engine = engine
        if address is not None:
            cfg.address = address
        result = run_curate([p if "://" in p else Path(p) for p in inputs], output, cfg)
    card = result.card
    empty = nothing_kept(card, output)
    if empty:
        err_console.print(f"[bold red]error:[/] {shown(empty)}", highlight=False, soft_wrap=True)
        raise typer.Exit(3)
    table = Table(title="curation")
    for col in ("step", "in", "kept", "dropped"):
        table.add_column(col)
    for st in card["steps"]:
        table.add_row(
            st["step"],
            str(st["in"]),
            str(st["kept"]),
            escape(", ".join(f"{k} {v}" for k, v in st["dropped"].items()) or "-"),
        )
    console.print(table)
    acc = card["accounting"]
    console.print(
        f"records in [bold]{acc['in']}[/] = kept [green]{acc['kept']}[/] "
        f"(train {card['splits']['train']}, val {card['splits']['val']}, test {card['splits']['test']}) "
        f"+ rejected [red]{acc['rejected']}[/]"
    )
    console.print(f"card: {shown(output / 'card.md')}")


@app.command()
def stats(
    folder: Path = typer.Argument(
        ...,
        help="A curate output folder (or any folder of train/val/test files).",
        exists=True,
        file_okay=False,
    ),
    plots: Path | None = typer.Option(
        None, "--plots", help="Where to write the PNGs (default: FOLDER/plots)."
    ),
) -> None:
    """Length histograms, turns, task/label balance and top verb–noun pairs; printed and plotted."""
    from instructkit.data.split import SPLITS
    from instructkit.data.stats import collect, plot

    with user_errors(*DATA_ERRORS):
        splits = {}
        for name in SPLITS:
            found = sorted(p for p in folder.glob(f"{name}.*") if not p.name.endswith(".tmp"))
            if found:
                splits[name] = list(RecordReader(found[0]))
    if not splits:
        err_console.print(f"[bold red]error:[/] {shown(folder)} has no train/val/test files")
        raise typer.Exit(1)
    result = collect(splits)
    table = Table(title=shown(folder))
    for col in ("split", "records", "words p50", "words p90", "multi-turn"):
        table.add_column(col)
    for name, s in result["splits"].items():
        w = s["words_per_record"]
        table.add_row(
            name, str(s["records"]), str(w.get("p50", "-")), str(w.get("p90", "-")), str(s["multi_turn"])
        )
    console.print(table)
    pairs = Table(title="top verb–noun pairs of instructions")
    pairs.add_column("pair")
    pairs.add_column("count")
    for pair, n in result["top_verb_noun"][:10]:
        pairs.add_row(shown(pair), str(n))
    console.print(pairs)
    console.print(f"questions and statements (not imperatives): {result['questions']}")
    console.print("balance: " + shown(", ".join(f"{k} {v}" for k, v in result["balance"][:12])))
    for path in plot(result, plots or folder / "plots"):
        console.print(f"plot: {shown(path)}")


def _field_map(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, column = item.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise typer.BadParameter(f"{item!r} is not FIELD=COLUMN", param_hint="--field")
        out[key.strip()] = column.strip()
    return out


@app.command()
def template(
    inputs: list[Path] = typer.Argument(
        ...,
        help="One or more labeled data files (JSONL, JSON, Parquet, CoNLL; .gz too).",
        exists=True,
        dir_okay=False,
    ),
    task: str = typer.Option(
        ...,
        "--task",
        help="The task the rows hold: classification, ner, relation, qa, translation, "
        "summarization, dialogue or code.",
    ),
    template_name: str = typer.Option(
        "all",
        "--template",
        help="The template to render with (`instructkit templates list`), or 'all': one of the task's "
        "templates (built-in and --templates ones) per record, picked by a random generator seeded with "
        "--seed, in input order.",
    ),
    fields: list[str] = typer.Option(
        [], "--field", help="TASK_FIELD=COLUMN: read a task field from another column (repeatable)."
    ),
    templates: list[Path] = typer.Option(
        [],
        "--templates",
        help="A YAML file of more templates: a list of {name, task, prompt, answer, "
        "parser, options} (repeatable).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the per-record template pick with --template all."),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Output file of instruction records: .jsonl, .json or .parquet, optionally .gz.",
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        help="Input container (jsonl, json, parquet) or format (conll, sharegpt, ...); "
        "detected when not given.",
    ),
    rejects: Path | None = typer.Option(
        None,
        "--rejects",
        help="Where rejected rows go, a .jsonl file (default: OUTPUT's stem + .rejects.jsonl).",
    ),
) -> None:
    """Render labeled task records as instruction records (prompt + reference answer) with templates.

    Each kept record's meta keeps the task, the template, its answer parser, the options offered (labels,
    relations or entity types of the data, unless the template fixes them) and the source file and row.
    Prints records read = kept + rejected; rejected rows (invalid, or rendered without an answer) go to
    the rejects file with their reason. Output and rejects are written as one unit.
    """
    from instructkit.config import ConfigError
    from instructkit.tasks.parsers import ParserError
    from instructkit.tasks.records import TASK_SCHEMAS, read_task_records
    from instructkit.tasks.templates import TemplateError, TemplateSet, render_records

    field_map = _field_map(fields)
    rejects_path = rejects or _default_rejects_path(output)
    rejects_flag = "--rejects" if rejects else "the rejects file"
    with user_errors(*DATA_ERRORS, ConfigError, TemplateError, ParserError, ValueError):
        found = TemplateSet(templates)
        if task not in TASK_SCHEMAS:
            raise TemplateError(f"unknown task {task!r} (known: {', '.join(TASK_SCHEMAS)})")
        chosen = found.for_task(task) if template_name == "all" else [found.get(template_name, task)]
        check_outputs(inputs, [("--output", output), (rejects_flag, rejects_path)])
        check_suffix(output, get_format("instructkit").container, "--output")
        if container_suffix(rejects_path) != ".jsonl":
            raise OutputError(f"--rejects {rejects_path}: a rejects file is JSON lines; name a .jsonl file")
        if rejects_path.exists() and not is_rejects_file(rejects_path):
            raise OutputError(
                f"{rejects_flag} {rejects_path} exists and is not a rejects file; refusing to replace it "
                "(name another path with --rejects)"
            )
        read = read_task_records(inputs, task, field_map or None, fmt)
        done = render_records(read.records, chosen, seed=seed)
        rows, dump_rejects = dump_records(done.records, "instructkit", "skip")
        all_rejects = read.rejects + done.rejects + dump_rejects
        commit_files(
            [(output, encode_rows(rows, output)), (rejects_path, encode_rows(all_rejects, rejects_path))]
        )
    kept = len(rows)
    assert read.n_in == kept + len(all_rejects), "record accounting broke"  # guarded by tests
    console.print(
        f"read [bold]{read.n_in}[/] = kept [green]{kept}[/] + rejected "
        f"[{'red' if all_rejects else 'green'}]{len(all_rejects)}[/]; wrote {shown(output)}"
        + (f", rejects → {shown(rejects_path)}" if all_rejects else "")
    )
    console.print("templates: " + shown(", ".join(f"{k} {v}" for k, v in done.used.items())))
    if all_rejects:
        reasons: dict[str, int] = {}
        for r in all_rejects:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        console.print("rejects by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))


def _default_test_path(out: Path) -> Path:
    return _sibling(out, "test.jsonl")


def _default_card_path(out: Path) -> Path:
    return _sibling(out, "card.json")


@app.command()
def mixture(
    config: Path = typer.Argument(
        ...,
        help="The mixture config (YAML): sources (Super-NaturalInstructions task files or labeled files + "
        "task + templates), each with weight and cap; cap, total, seed. `instructkit config show mixture` "
        "lists every key.",
        exists=True,
        dir_okay=False,
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Output file of instruction records: .jsonl, .json or .parquet, optionally .gz.",
    ),
    card: Path | None = typer.Option(
        None,
        "--card",
        help="Where the card goes, a .json file counting per source read, rejected, available, limit, "
        "rate and taken (default: OUTPUT's stem + .card.json).",
    ),
    rejects: Path | None = typer.Option(
        None,
        "--rejects",
        help="Where every source's rejected rows go, a .jsonl file (default: OUTPUT's stem + .rejects.jsonl).",
    ),
    test_output: Path | None = typer.Option(
        None,
        "--test",
        help="Where the held-out set goes when sources name `test` files: each such row rendered with the "
        "source's test_template, never capped or mixed (default: OUTPUT's stem + .test.jsonl).",
    ),
) -> None:
    """Mix instruction sources into one file, examples-proportional with a cap (as T5 and FLAN).

    Each source's rate is weight * min(available, cap); without a total each source gives
    min(available, cap) records, with one the total is shared out by rate (no source above its cap),
    sampled with the config's seed. Output, card and rejects are written as one unit.
    """
    from instructkit.config import ConfigError
    from instructkit.tasks.mixture import build_held_out, build_mixture, load_mixture, mixture_inputs
    from instructkit.tasks.natural_instructions import TaskFileError
    from instructkit.tasks.parsers import ParserError
    from instructkit.tasks.templates import TemplateError

    rejects_path = rejects or _default_rejects_path(output)
    card_path = card or _default_card_path(output)
    with user_errors(*DATA_ERRORS, ConfigError, TemplateError, ParserError, TaskFileError, ValueError):
        cfg = load_mixture(config)
        has_test = any(src.test is not None for src in cfg.sources)
        if test_output is not None and not has_test:
            raise OutputError(f"--test {test_output}: no source of {config} names test files")
        test_path = (test_output or _default_test_path(output)) if has_test else None
        inputs = [config, *(p for p in mixture_inputs(cfg, config.parent) if not p.startswith("pkg:"))]
        outputs = [("--output", output), ("--card", card_path), ("--rejects", rejects_path)]
        check_outputs(inputs, outputs + ([("--test", test_path)] if test_path else []))
        if test_path is not None:
            check_suffix(test_path, get_format("instructkit").container, "--test")
        check_suffix(output, get_format("instructkit").container, "--output")
        if container_suffix(card_path) != ".json":
            raise OutputError(f"--card {card_path}: a card is one JSON object; name a .json file")
        if container_suffix(rejects_path) != ".jsonl":
            raise OutputError(f"--rejects {rejects_path}: a rejects file is JSON lines; name a .jsonl file")
        if rejects_path.exists() and not is_rejects_file(rejects_path):
            raise OutputError(
                f"the rejects file {rejects_path} exists and is not a rejects file; refusing to replace it "
                "(name another path with --rejects)"
            )
        mixed = build_mixture(cfg, base=config.parent)
        rows, dump_rejects = dump_records(mixed.records, "instructkit", "raise")
        info = mixed.card()
        info.update({"config": str(config), "output": str(output)})
        files = [(output, encode_rows(rows, output))]
        all_rejects = mixed.rejects
        if test_path is not None:
            held = build_held_out(cfg, base=config.parent)
            test_rows, _ = dump_records(held.records, "instructkit", "raise")
            info["held_out"] = {"output": str(test_path), "records": len(test_rows), "sources": held.counts}
            files.append((test_path, encode_rows(test_rows, test_path)))
            all_rejects = [*all_rejects, *({**r, "split": "test"} for r in held.rejects)]
        files += [
            (card_path, encode_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", card_path)),
            (rejects_path, encode_rows(all_rejects, rejects_path)),
        ]
        commit_files(files)
    table = Table(title="mixture")
    for col in ("source", "task", "read", "rejected", "available", "limit", "rate", "taken"):
        table.add_column(col, overflow="fold")
    for c in mixed.counts:
        table.add_row(
            shown(c.name), shown(c.task), str(c.read), str(c.rejected), str(c.available), str(c.limit),
            f"{c.rate:.4f}", str(c.taken),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"wrote [bold]{len(rows)}[/] records to {shown(output)}; card → {shown(card_path)}"
        + (f", rejects ({len(all_rejects)}) → {shown(rejects_path)}" if all_rejects else "")
    )
    if test_path is not None:
        console.print(f"held-out: [bold]{info['held_out']['records']}[/] records → {shown(test_path)}")
