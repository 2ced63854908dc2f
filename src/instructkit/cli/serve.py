"""``instructkit serve MODEL``: an OpenAI-compatible server that batches concurrent clients, with a chat page.

instructkit serve smollm2-135m-instruct --adapter tuned=runs/quickstart/train --port 8000

The server's options are :class:`~instructkit.serve.config.ServerConfig`'s fields: each option's default
is the field's default and its help the field's docstring (:func:`_config_option`), so neither is written
twice; this module adds only what is the command line's own (bounds, the environment variable).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import typer

from instructkit.cli.common import console, user_errors
from instructkit.models import ModelNotFoundError
from instructkit.serve.config import ServerConfig, field_docs

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ServerConfig)}
_DOCS = field_docs(ServerConfig)


def _config_option(field: str, *, extra_help: str = "", **kwargs: Any) -> Any:
    """The option ``--FIELD`` (underscores as dashes) of ServerConfig's ``field``: its default and its doc."""
    help_text = " ".join(p for p in (_DOCS.get(field, "").replace("``", ""), extra_help) if p)
    flag = "--" + field.replace("_", "-")
    if _DEFAULTS[field] is True:  # a setting on by default: --no-FIELD turns it off
        flag += "/--no-" + field.replace("_", "-")
    return typer.Option(_DEFAULTS[field], flag, help=help_text, **kwargs)


def serve(
    model: str = typer.Argument(..., help="Alias, local folder, hub id, or a trained run folder."),
    adapter: list[str] = typer.Option(
        [],
        "--adapter",
        "-a",
        help="NAME=PATH of a LoRA adapter (or trained LoRA run) to serve as model NAME; repeatable.",
    ),
    name: str | None = typer.Option(
        None, "--name", help="The base model's id in the API (default: MODEL as given)."
    ),
    host: str = _config_option("host"),
    port: int = _config_option("port", min=0, max=65535),
    api_key: str | None = _config_option(
        "api_key",
        envvar="INSTRUCTKIT_API_KEY",
        extra_help="An empty INSTRUCTKIT_API_KEY counts as unset.",
    ),
    max_batch: int = _config_option("max_batch", min=1),
    max_queue: int = _config_option("max_queue", min=0),
    prefix_cache_mb: float = _config_option("prefix_cache_mb", min=0),
    draft_tokens: int = _config_option("draft_tokens", min=0),
    suffix_draft_tokens: int = _config_option("suffix_draft_tokens", min=0),
    packed_weights: bool = _config_option("packed_weights"),
    max_body_bytes: int = _config_option("max_body_bytes", min=1),
    max_messages: int = _config_option("max_messages", min=1),
    max_prompt_tokens: int | None = _config_option("max_prompt_tokens", min=1),
    max_tokens: int = _config_option("max_tokens", min=1),
    default_max_tokens: int = _config_option("default_max_tokens", min=1),
    log_prompts: bool = _config_option("log_prompts"),
) -> None:
    """Serve MODEL (and its adapters) over an OpenAI-compatible API; open http://HOST:PORT/ to chat."""
    from instructkit.serve.loading import AdapterError, load_served, parse_adapters
    from instructkit.serve.server import http_url, run_server
    from instructkit.templates import TemplateError

    with user_errors(ValueError):  # a bad setting (an empty --api-key) is refused before the model loads
        cfg = ServerConfig(
            host=host, port=port, api_key=api_key, max_batch=max_batch, max_queue=max_queue,
            prefix_cache_mb=prefix_cache_mb, draft_tokens=draft_tokens,
            suffix_draft_tokens=suffix_draft_tokens, packed_weights=packed_weights,
            max_body_bytes=max_body_bytes, max_messages=max_messages,
            max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens, default_max_tokens=default_max_tokens,
            log_prompts=log_prompts,
        )  # fmt: skip
    with user_errors(ModelNotFoundError, AdapterError, TemplateError, ValueError):
        served = load_served(model, parse_adapters(adapter), served_name=name)
    url = http_url(host, port)
    # markup off: "[fe80::1%25eth0]" (or a name in brackets) is text, not a rich tag
    console.print(f"serving {', '.join(served.names)} on {url}/ (chat page at /, API at /v1)", markup=False)
    run_server(served, cfg)
