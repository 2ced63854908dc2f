"""What the ``instructkit generate`` subcommands share: the backend and run flags (declared once, added to
every generator's command by :func:`generator_command`), the config they build (a YAML file, then
``--set``, then the flags given), and the summary table.

How the ``backend`` mapping is built — no key is ever dropped:

1. the config file's ``backend:`` mapping, then every ``--set backend.KEY=VALUE`` on top of it;
2. the backend's name: ``--backend``, else ``openai`` when ``--base-url`` is given, else the name from step
   1, else ``openai`` when step 1 sets a ``base_url``, else ``local``;
3. the flags given refine it: ``--model`` and ``--base-url`` set their key, ``--concurrency`` sets
   ``concurrency`` (openai) or ``batch_size`` (local), ``--api-key`` (or ``$OPENAI_API_KEY``) sets
   ``api_key`` for a backend that takes one (local ignores it);
4. every key from step 1 stays, whatever flags are given — also when the flags chose another backend than
   the file or ``--set`` named: a key that backend has is kept (``model``, for one), and a key it does not
   have (``batch_size`` after ``--backend openai``) is an error naming ``backend.KEY`` and where it came
   from, never silently left out.

The card records the settings the backend ran with (``backend.settings`` in card.json), secrets redacted.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from instructkit.cli.common import console, user_errors

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
    [],
    "--set",
    help="Override a config key (YAML value): --set instruction_sampling.temperature=1.0, "
    "--set backend.timeout=30. backend.* keys always apply, whatever --backend/--model/--base-url say; "
    "one the chosen backend does not have is an error, never dropped.",
)
BACKEND = typer.Option(
    None,
    "--backend",
    help="local (a model in this process) or openai (any compatible server); default: the config's, "
    "else openai with --base-url, else local.",
)
MODEL = typer.Option(
    None, "--model", "-m", help="local: alias, folder or hub id; openai: the server's model name."
)
BASE_URL = typer.Option(
    None, "--base-url", help="openai: the server, e.g. http://127.0.0.1:8000/v1 (implies --backend openai)."
)
API_KEY = typer.Option(
    None,
    "--api-key",
    envvar="OPENAI_API_KEY",
    help="openai: the key (or OPENAI_API_KEY; a local backend ignores it). Redacted in the card.",
)
CONCURRENCY = typer.Option(
    None, "--concurrency", min=1, help="openai: requests in flight; local: batch size."
)
BUDGET = typer.Option(
    None, "--budget-tokens", min=1, help="Stop cleanly after this many new tokens (cache is free)."
)
SEED = typer.Option(None, "--seed", help="Seed of every random choice (same seed + cache = same requests).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar.")

SHARED: tuple[tuple[str, Any, Any], ...] = (
    ("out_dir", Path, OUT),
    ("config_file", Path | None, CONFIG),
    ("overrides", list[str], SET),
    ("backend", str | None, BACKEND),
    ("model", str | None, MODEL),
    ("base_url", str | None, BASE_URL),
    ("api_key", str | None, API_KEY),
    ("concurrency", int | None, CONCURRENCY),
    ("budget_tokens", int | None, BUDGET),
    ("seed", int | None, SEED),
    ("quiet", bool, QUIET),
)
"""The options of every generator: (parameter name, type, the Typer option)."""


def generator_command(name: str, options: Callable[..., dict[str, Any]]) -> Callable[..., None]:
    """The Typer command of generator ``name``: ``options`` takes the generator's own options (Typer
    parameters, as any command declares them) and returns the config keys they give (None for one not
    given, so the ``--config`` file's value or the default applies); the command adds the :data:`SHARED`
    options to its signature, then runs :func:`run_generator`. Its help is ``options``'s docstring."""
    hints = typing.get_type_hints(options)
    own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(options).parameters.values()]
    clash = sorted({p.name for p in own} & {n for n, _, _ in SHARED})
    if clash:
        raise TypeError(
            f"generate {name}: {', '.join(clash)} is a shared option; give the parameter another name"
        )
    shared = [
        inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=kind)
        for n, kind, option in SHARED
    ]

    def command(**given: Any) -> None:
        s = {n: given.pop(n) for n, _, _ in SHARED}
        data = options(**given)
        data["backend"] = backend_flags(
            s["backend"], s["model"], s["base_url"], s["api_key"], s["concurrency"]
        )
        data["budget_tokens"], data["seed"] = s["budget_tokens"], s["seed"]
        run_generator(name, data, s["out_dir"], s["config_file"], list(s["overrides"] or []), s["quiet"])

    command.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
    command.__doc__ = options.__doc__
    command.__name__ = options.__name__
    return command


def backend_flags(
    backend: str | None, model: str | None, base_url: str | None, api_key: str | None, concurrency: int | None
) -> dict[str, Any]:
    """The backend flags given, by parameter (``name`` for ``--backend``); :func:`merge_backend` turns them
    and the config's ``backend`` mapping into one. Empty when no flag is given."""
    given = {"name": backend, "model": model, "base_url": base_url, "api_key": api_key,
             "concurrency": concurrency}  # fmt: skip
    return {k: v for k, v in given.items() if v is not None}


def merge_backend(
    config: Any,
    flags: dict[str, Any],
    sources: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """The ``backend`` mapping: ``config`` (the file's, with ``--set backend.*`` applied) refined by
    ``flags`` (:func:`backend_flags`), by the rule in the module docstring. None when neither says anything
    (the generator's default backend). ``sources`` says where each key of ``config`` came from (``--set``,
    the file's name), for the error about a key the chosen backend does not have."""
    from instructkit.generate.backends import BACKENDS
    from instructkit.generate.runner import GenerateConfigError

    if config is None and not flags:
        return None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise GenerateConfigError(
            f"{{key}} is a mapping with a name (local or openai) and its parameters, not {config!r}",
            key="backend",
        )
    said = config.get("name")
    if flags.get("name") is not None:
        name, why = flags["name"], "--backend"
    elif flags.get("base_url") is not None:
        name, why = "openai", "--base-url"
    elif said is not None:
        name, why = said, f"backend.name from {(sources or {}).get('name', 'the config')}"
    elif config.get("base_url") is not None:
        name, why = "openai", "backend.base_url"
    else:
        name, why = "local", "default"
    out = {**config, "name": name}
    cls = BACKENDS.get(str(name).strip().lower()) if isinstance(name, str) else None
    if cls is None:
        return out  # an unknown name: load_generate_config says so, listing the known ones
    params = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in config:
        if key != "name" and key not in params:
            where = (sources or {}).get(key, "the config")
            switched = (
                f" (it was written for the {said} backend)" if isinstance(said, str) and said != name else ""
            )
            raise GenerateConfigError(
                f"{{key}} (from {where}) is not a parameter of the {name} backend chosen by {why}{switched}; "
                f"its parameters: {', '.join(sorted(params))}. Remove it, or choose the backend that has it",
                key=f"backend.{key}",
            )
    for key, value in flags.items():
        if key == "name":
            continue
        if key == "concurrency":
            key = (
                "concurrency" if "concurrency" in params else "batch_size" if "batch_size" in params else key
            )
        elif key == "api_key" and key not in params:
            continue  # $OPENAI_API_KEY fills --api-key; a backend without a key has nothing to do with it
        if key not in params:
            raise GenerateConfigError(
                f"--{key.replace('_', '-')} is not a setting of the {name} backend chosen by {why}"
                f" (its parameters: {', '.join(sorted(params))})"
            )
        out[key] = value
    return out


def run_generator(
    name: str,
    flags: dict[str, Any],
    out_dir: Path,
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    quiet: bool = False,
) -> None:
    """Load the config (file, then ``--set``, then ``flags`` — the flags given, None left out; ``backend``
    merged by :func:`merge_backend`, never replaced), run the generator, print the summary table. Every
    library error is one red line."""
    from instructkit.config import ConfigError, parse_overrides, read_yaml, set_dotted
    from instructkit.files import OutputError
    from instructkit.generate import runner
    from instructkit.generate.cache import CacheError
    from instructkit.models import ModelNotFoundError
    from instructkit.records import RecordError

    with user_errors(
        ConfigError, OutputError, CacheError, ModelNotFoundError, RecordError, FileNotFoundError
    ):
        data: dict[str, Any] = read_yaml(config_file, runner.GenerateConfigError) if config_file else {}
        sources = (
            {k: str(config_file) for k in data["backend"]}
            if config_file and isinstance(data.get("backend"), dict)
            else {}
        )
        for key, value in parse_overrides(overrides or [], runner.GenerateConfigError).items():
            set_dotted(data, key, value, runner.GenerateConfigError, parse=False)
            if key.startswith("backend."):
                sources[key.split(".")[1]] = f"--set {key}"
            elif key == "backend" and isinstance(value, dict):
                sources.update({k: "--set backend" for k in value})
        for key, value in flags.items():
            if key == "backend":
                merged = merge_backend(data.get("backend"), value or {}, sources)
                if merged is not None:
                    data["backend"] = merged
                continue
            if value is None or value == {}:
                continue
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
