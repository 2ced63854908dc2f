"""``instructkit generate``: make instruction data with a model (Self-Instruct, Evol-Instruct, code tasks
checked by execution), on the bundled model or any OpenAI-compatible server, resumable from its cache.

One module per generator (``self_instruct``, ``evol``, ``code``): its ``NAME`` and a ``command`` built by
:func:`~instructkit.cli.generate.common.generator_command` from a function that takes the generator's own
options and returns its config mapping. The options every generator shares (output folder, ``--config``,
``--set``, the backend flags, ``--budget-tokens``, ``--seed``, ``--quiet``) are declared once, in
``common``. Every module here but ``common`` is a subcommand, so a new generator's CLI is one module.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

app = typer.Typer(help="Generate instruction data with a model.", no_args_is_help=True)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "common":
        _cli = importlib.import_module(f"{__name__}.{_module.name}")
        app.command(_cli.NAME)(_cli.command)
