"""The ``instructkit data`` command group; its commands register on it from the modules beside it."""

import typer

app = typer.Typer(help="Read, convert, summarize and inspect instruction data.", no_args_is_help=True)
