"""``instructkit config show KIND [NAME]``: every field of a config schema, printed from the dataclasses.

instructkit config show train | curate | run | continual | method [NAME] | step [NAME] | generate [NAME]
                        | mixture | template
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from instructkit.cli.common import console, user_errors

app = typer.Typer(help="Show the schema of each YAML instructkit reads.", no_args_is_help=True)

KINDS = ("train", "curate", "run", "continual", "method", "step", "generate", "mixture", "template")


def _schemas(kind: str, name: str | None) -> list[tuple[str, type, str, tuple[str, ...]]]:
    """(title, dataclass, key prefix, fields to skip) for each table to print."""
    from instructkit.config import ConfigError

    if kind == "train":
        from instructkit.train.config import TrainConfig

        return [("train config (instructkit train CONFIG.yaml)", TrainConfig, "", ())]
    if kind == "curate":
        from instructkit.data.curate_config import CurateConfig

        return [("curate config (instructkit data curate --config CONFIG.yaml)", CurateConfig, "", ())]
    if kind == "run":
        from instructkit.recipe import Recipe

        return [("run recipe (instructkit run RECIPE.yaml)", Recipe, "", ())]
    if kind == "continual":
        from instructkit.continual.recipe import ContinualRecipe, TaskSpec
        from instructkit.continual.strategies import STRATEGIES

        return [
            ("continual recipe (instructkit continual RECIPE.yaml)", ContinualRecipe, "", ("tasks",)),
            ("each task (tasks[N])", TaskSpec, "tasks[N]", ()),
            *((f"strategy {n} (strategy: {{name: {n}, ...}})", STRATEGIES[n], "strategy", ()) for n in sorted(STRATEGIES)),
        ]  # fmt: skip
    if kind == "mixture":
        from instructkit.tasks.mixture import MixtureConfig, MixtureSource

        return [
            ("mixture config (instructkit data mixture CONFIG.yaml -o OUT.jsonl)", MixtureConfig, "", ("sources",)),
            ("each source (sources[N]): sni + encoding, or data + task + templates + fields", MixtureSource,
             "sources[N]", ()),
        ]  # fmt: skip
    if kind == "template":
        from instructkit.tasks.templates import TemplateSpec

        return [
            (
                "template (a list item of a --templates YAML file, or of its templates: key)",
                TemplateSpec,
                "[N]",
                (),
            )
        ]
    if kind == "generate":
        import instructkit.generate  # noqa: F401  (the package registers every generator)
        from instructkit.generate.runner import GENERATORS

        key = name.strip().lower() if name else None
        if key is not None and key not in GENERATORS:
            raise ConfigError(f"unknown generator {name!r} (known: {', '.join(sorted(GENERATORS))})")
        names = [key] if key is not None else sorted(GENERATORS)
        return [
            (f"generator {n} (instructkit generate {n} --config FILE; a run recipe's generate: {{generator: {n}, ...}})",
             GENERATORS[n].config, "", ())
            for n in names
        ]  # fmt: skip
    if kind == "method":
        from instructkit.train.methods import METHODS

        registry: dict[str, Any] = METHODS
        key = name.strip().lower().replace("_", "-") if name else None
        label, where = "method", "method"
    else:
        import instructkit.data  # noqa: F401  (the package registers every step)
        from instructkit.data.base import STEPS

        registry, key, label, where = STEPS, name, "step", "steps[N]"
    if key is not None and key not in registry:
        raise ConfigError(f"unknown {label} {name!r} (known: {', '.join(sorted(registry))})")
    names = [key] if key is not None else sorted(registry)
    field = "name" if label == "method" else "step"
    return [(f"{label} {n} ({where}: {{{field}: {n}, ...}})", registry[n], "", ()) for n in names]


def _summary(cls: type) -> str:
    """What a method or step does: its class docstring, or its module's (a dataclass without a docstring
    gets a generated signature as ``__doc__``)."""
    import sys

    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):
        doc = sys.modules[cls.__module__].__doc__ or ""
    return " ".join(doc.split())


@app.command()
def show(
    kind: str = typer.Argument(..., help=f"Which schema: {', '.join(KINDS)}."),
    name: str | None = typer.Argument(None, help="For method, step and generate: one name (default: all)."),
) -> None:
    """Print every field of a config schema: key, type, default, range and what it is for."""
    from instructkit.config import ConfigError, describe

    if kind not in KINDS:
        raise typer.BadParameter(f"{kind!r} is not one of {', '.join(KINDS)}", param_hint="KIND")
    if name is not None and kind not in ("method", "step", "generate"):
        raise typer.BadParameter(f"only method and step take a NAME, not {kind}", param_hint="NAME")
    with user_errors(ConfigError):
        schemas = _schemas(kind, name)
    for title, cls, prefix, skip in schemas:
        doc = _summary(cls) if kind in ("method", "step") else ""
        table = Table(title=escape(title), caption=escape(doc) or None)
        for col in ("key", "type", "default", "range", "doc"):
            table.add_column(col, overflow="fold")
        rows = list(describe(cls, prefix, skip))
        for f in rows:
            table.add_row(*(escape(x) for x in (f.key, f.type, f.default, f.rules, f.doc)))
        if not rows:
            table.add_row("-", "", "", "", "no parameters")
        console.print(table)
