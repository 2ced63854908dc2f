"""``instructkit data curate`` (a curate config over input files, local or on Ray) and ``stats``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from instructkit.cli.common import console, err_console, user_errors
from instructkit.cli.data.app import app
from instructkit.cli.data.common import (
    DATA_ERRORS,
    FORMAT_HELP,
    check_choice,
    shown,
)
from instructkit.formats import RecordReader, format_names


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

    check_choice(fmt, format_names(), "--format")
    check_choice(on_error, ["raise", "skip"], "--on-error")
    check_choice(engine, ["local", "ray"], "--engine")
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
