"""``instructkit studio``: the local web app over run folders — runs, data, training live, chat and export.

instructkit studio --runs runs --port 7860

Options map 1:1 onto :class:`~instructkit.studio.config.StudioConfig`'s fields (defaults and help from it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import typer

from instructkit.cli.common import user_errors
from instructkit.serve.config import field_docs
from instructkit.studio.config import StudioConfig

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StudioConfig)}
_DOCS = field_docs(StudioConfig)


def _option(field: str, *, extra_help: str = "", **kwargs: Any) -> Any:
    help_text = " ".join(p for p in (_DOCS.get(field, "").replace("``", ""), extra_help) if p)
    return typer.Option(_DEFAULTS[field], "--" + field.replace("_", "-"), help=help_text, **kwargs)


def studio(
    runs: str = _option("runs"),
    host: str = _option("host"),
    port: int = _option("port", min=0, max=65535),
    api_key: str | None = _option(
        "api_key", envvar="INSTRUCTKIT_API_KEY", extra_help="An empty INSTRUCTKIT_API_KEY counts as unset."
    ),
    max_jobs: int = _option("max_jobs", min=1),
) -> None:
    """Open the studio over the run folders under --runs: browse runs and data, train, chat, export."""
    from pathlib import Path

    from instructkit.studio.app import run_studio

    with user_errors(ValueError):
        if not Path(runs).is_dir():
            raise ValueError(f"--runs {runs}: no such folder")
        cfg = StudioConfig(runs=runs, host=host, port=port, api_key=api_key or None, max_jobs=max_jobs)
    run_studio(cfg)
