"""``instructkit templates``: list the instruction templates and show one rendered on its task's example."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.panel import Panel
from rich.table import Table

from instructkit.cli.common import console, user_errors
from instructkit.cli.data import shown

app = typer.Typer(
    help="The instruction templates that turn task records (labeled NLP data) into instruction data.",
    no_args_is_help=True,
)

TEMPLATES_HELP = (
    "A YAML file of more templates: a list of {name, task, prompt, answer, parser, options, description} "
    "(repeatable)."
)


def _errors():
    from instructkit.config import ConfigError
    from instructkit.tasks.parsers import ParserError
    from instructkit.tasks.templates import TemplateError

    return user_errors(ConfigError, TemplateError, ParserError)


def _options(tpl) -> str:
    from instructkit.tasks.templates import OPTION_TASKS

    if tpl.options is not None:
        return shown(", ".join(tpl.options))
    return "from the data" if tpl.task in OPTION_TASKS else "-"


@app.command("list")
def list_(
    task: str | None = typer.Option(None, "--task", help="Only the templates of this task."),
    templates: list[Path] = typer.Option([], "--templates", help=TEMPLATES_HELP),
) -> None:
    """A table of the templates: name, task, parser, fixed options, what sets each apart."""
    from instructkit.tasks.templates import TemplateSet

    with _errors():
        found = TemplateSet(templates)
        chosen = found.for_task(task) if task is not None else [found.templates[n] for n in found.names()]
    table = Table(title="instruction templates" + (f" of {shown(task)}" if task else ""))
    table.add_column("name", no_wrap=True)
    for col in ("task", "parser", "options", "from", "description"):
        table.add_column(col)
    for t in chosen:
        table.add_row(
            shown(t.name),
            t.task,
            t.parser,
            _options(t),
            "built-in" if t.builtin else "--templates",
            shown(t.description),
        )
    console.print(table)


@app.command()
def show(
    name: str = typer.Argument(..., help="The template's name (`instructkit templates list` shows them)."),
    templates: list[Path] = typer.Option([], "--templates", help=TEMPLATES_HELP),
) -> None:
    """Print a template's prompt and answer text, then both rendered on its task's schema example."""
    from instructkit.tasks.records import TASK_SCHEMAS
    from instructkit.tasks.templates import TemplateSet, context_names, render_records

    with _errors():
        tpl = TemplateSet(templates).get(name)
        example = dict(TASK_SCHEMAS[tpl.task].example)
        if tpl.task == "code":  # the schema example has no reference solution; show one so the answer renders
            example["solution"] = "def add(a: int, b: int) -> int:\n    return a + b"
        done = render_records([example], [tpl])
    options = _options(tpl)
    console.print(
        f"[bold]{shown(tpl.name)}[/] (task {tpl.task}, parser {tpl.parser}, options: {shown(options)})"
    )
    if tpl.description:
        console.print(shown(tpl.description))
    console.print("variables: " + ", ".join(context_names(tpl.task)))
    console.print(Panel(shown(tpl.prompt), title="prompt template", title_align="left"))
    console.print(Panel(shown(tpl.answer), title="answer template", title_align="left"))
    if done.records:
        rec = done.records[0]
        console.print(
            Panel(shown(rec.messages[0].content), title="rendered prompt (example)", title_align="left")
        )
        console.print(
            Panel(shown(rec.messages[1].content), title="rendered answer (example)", title_align="left")
        )
    else:
        console.print(f"the example renders no record: {shown(done.rejects[0]['message'])}")
