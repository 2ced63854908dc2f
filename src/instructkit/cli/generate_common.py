"""What the ``instructkit generate`` subcommands share: the backend and run flags (one definition each), the
config they build (a YAML file, then ``--set``, then the flags given), and the summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from instructkit.cli._common import console, user_errors

OUT = typer.Option(
    ..., "-o", "--output", help="Output folder: records.jsonl, rejects.jsonl, card, cache.sqlite."
)
CONFIG = typer.Option(
    None,
    "--config",
    exists=True,
    dir_okay=False,
    help="Generator config YAML (`instructkit config show generate`).",
)
SET = typer.Option(
    [], "--set", help="Override a config key: --set instruction_sampling.temperature=1.0 (YAML)."
)
BACKEND = typer.Option(
    None, "--backend", help="local (a model in this process) or openai (any compatible server)."
)
MODEL = typer.Option(
    None, "--model", "-m", help="local: alias, folder or hub id; openai: the server's model name."
)
BASE_URL = typer.Option(None, "--base-url", help="openai: the server, e.g. http://127.0.0.1:8000/v1.")
API_KEY = typer.Option(
    None, "--api-key", envvar="OPENAI_API_KEY", help="openai: the key (or OPENAI_API_KEY)."
)
CONCURRENCY = typer.Option(
    None, "--concurrency", min=1, help="openai: requests in flight; local: batch size."
)
BUDGET = typer.Option(
    None, "--budget-tokens", min=1, help="Stop cleanly after this many new tokens (cache is free)."
)
SEED = typer.Option(None, "--seed", help="Seed of every random choice (same seed + cache = same requests).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar.")


def backend_flags(
    backend: str | None, model: str | None, base_url: str | None, api_key: str | None, concurrency: int | None
) -> dict[str, Any]:
    """The ``backend`` mapping the flags given ask for (None when no flag touches it)."""
    if not any(v is not None for v in (backend, model, base_url, api_key, concurrency)):
        return {}
    out: dict[str, Any] = {"name": backend or ("openai" if base_url else "local")}
    if model is not None:
        out["model"] = model
    if base_url is not None:
        out["base_url"] = base_url
    if api_key is not None:
        out["api_key"] = api_key
    if concurrency is not None:
        out["concurrency" if out["name"] == "openai" else "batch_size"] = concurrency
    return out


def run_generator(
    name: str,
    flags: dict[str, Any],
    out_dir: Path,
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    quiet: bool = False,
) -> None:
    """Load the config (file, then ``--set``, then ``flags`` — the flags given, None left out), run the
    generator, print the summary table. Every library error is one red line."""
    from instructkit.config import ConfigError, parse_overrides, read_yaml, set_dotted
    from instructkit.formats.atomic import OutputError
    from instructkit.generate import runner
    from instructkit.generate.cache import CacheError
    from instructkit.models import ModelNotFoundError
    from instructkit.records import RecordError

    with user_errors(
        ConfigError, OutputError, CacheError, ModelNotFoundError, RecordError, FileNotFoundError
    ):
        data: dict[str, Any] = read_yaml(config_file, runner.GenerateConfigError) if config_file else {}
        for key, value in parse_overrides(overrides or [], runner.GenerateConfigError).items():
            set_dotted(data, key, value, runner.GenerateConfigError, parse=False)
        for key, value in flags.items():
            if value is None or value == {}:
                continue
            if (
                key == "backend"
                and isinstance(data.get("backend"), dict)
                and data["backend"].get("name") == value["name"]
            ):
                value = {**data["backend"], **value}  # flags refine the file's backend
            data[key] = value
        try:
            cfg = runner.load_generate_config(name, data)
        except ConfigError as e:
            raise (e.within(config_file) if config_file else e) from None
        result = runner.generate(name, cfg, out_dir, show_progress=not quiet)
    print_summary(result)


def print_summary(result: Any) -> None:
    card, s = result.card, result.summary
    table = Table(title=f"{card['generator']} → {result.out_dir}")
    table.add_column("stage")
    for col in ("in", "kept", "dropped (by reason)"):
        table.add_column(col, justify="right" if col != "dropped (by reason)" else "left")
    for st in card["steps"]:
        dropped = ", ".join(f"{k} {v}" for k, v in st["dropped"].items()) or "-"
        table.add_row(escape(st["step"]), str(st["in"]), str(st["kept"]), escape(dropped))
    console.print(table)
    acc = card["accounting"]
    cost = "" if s["cost"] is None else f", cost {s['cost']:.4f}"
    console.print(
        f"{acc['in']} candidate {s['unit']}s = {acc['kept']} kept + {acc['rejected']} rejected"
        f"{'' if acc['balanced'] else ' (NOT BALANCED)'}; {s['records']} records. "
        f"Requests: {s['sent']} sent, {s['cache_hits']} from the cache, {s['errors']} errors; "
        f"tokens {s['prompt_tokens']:,} prompt + {s['completion_tokens']:,} completion{cost}; {s['seconds']} s.",
        highlight=False,
    )
    console.print(f"stopped: {escape(card['stopped'])}", highlight=False)
