"""``instructkit data template`` (labeled task records rendered as instruction records) and ``mixture``
(several task datasets mixed with a held-out test split)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from instructkit.cli.common import console, user_errors
from instructkit.cli.data.app import app
from instructkit.cli.data.common import (
    DATA_ERRORS,
    default_rejects_path,
    shown,
    sibling,
)
from instructkit.files import (
    OutputError,
    check_outputs,
    check_suffix,
    commit_files,
    container_suffix,
    encode_text,
)
from instructkit.formats import dump_records, get_format
from instructkit.formats.io import encode_rows, is_rejects_file


def parse_field_map(items: list[str]) -> dict[str, str]:
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

    field_map = parse_field_map(fields)
    rejects_path = rejects or default_rejects_path(output)
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
    return sibling(out, "test.jsonl")


def _default_card_path(out: Path) -> Path:
    return sibling(out, "card.json")


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

    rejects_path = rejects or default_rejects_path(output)
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
