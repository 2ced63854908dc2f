"""The ``instructkit`` command: ``instructkit --help``. Parsing only; the work lives in the library."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from instructkit import __version__
from instructkit.cli import (
    chat,
    config,
    continual,
    data,
    eval,
    export,
    generate,
    models,
    report,
    run,
    serve,
    studio,
    templates,
    train,
)


class _OneLineErrors(TyperGroup):
    """The root command group: any exception a command did not turn into its own one-line error becomes
    one line too, with the saved traceback's path (cli/common.py says how errors are shown)."""

    def invoke(self, ctx: Any) -> Any:
        from instructkit.cli.common import report_unexpected

        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort):  # usage errors and exits: typer shows them
            raise
        except Exception as e:
            report_unexpected(e, " ".join(sys.argv[1:]) or ctx.invoked_subcommand or "")
            raise typer.Exit(1) from None


app = typer.Typer(
    name="instructkit",
    cls=_OneLineErrors,
    help="Open instruction data to better language models: data, training, evaluation and reports.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(config.app, name="config")
app.add_typer(generate.app, name="generate")
app.add_typer(templates.app, name="templates")
app.command("chat")(chat.chat)
app.command("serve")(serve.serve)
app.command("train")(train.train)
app.command("eval")(eval.eval_)
app.command("run")(run.run)
app.command("continual")(continual.continual)
app.command("report")(report.report)
app.command("export")(export.export)
app.command("studio")(studio.studio)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"instructkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False,
        "--debug",
        envvar="INSTRUCTKIT_DEBUG",
        help="Print the full traceback of an error (errors are otherwise one line; an unexpected one "
        "also saves its traceback under instructkit's cache and prints the path).",
    ),
) -> None:
    """instructkit: open instruction data to better language models, end to end."""
    from instructkit.cli.common import set_debug, show_library_warnings

    set_debug(debug)
    show_library_warnings()


def main() -> None:
    # PEFT (0.21) reads transformers' deprecated ``is_gradient_checkpointing`` whenever it wraps a model;
    # the FutureWarning is about that pairing of libraries, nothing a user of the command can act on.
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
    app()
