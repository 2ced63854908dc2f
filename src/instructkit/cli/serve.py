"""``instructkit serve MODEL``: an OpenAI-compatible server that batches concurrent clients, with a chat page.

instructkit serve smollm2-135m-instruct --adapter tuned=runs/quickstart/train --port 8000
"""

from __future__ import annotations

import typer

from instructkit.cli._common import console, user_errors
from instructkit.models import ModelNotFoundError


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
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback only by default)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="INSTRUCTKIT_API_KEY",
        help="Require Authorization: Bearer KEY on every API request. An empty or blank KEY is refused at "
        "start (leave the option out to serve without a key; an empty INSTRUCTKIT_API_KEY counts as unset).",
    ),
    max_batch: int = typer.Option(
        8, "--max-batch", min=1, help="Requests decoded together (1: one at a time)."
    ),
    max_queue: int = typer.Option(64, "--max-queue", min=0, help="Requests that may wait; more get 429."),
    prefix_cache_mb: float = typer.Option(
        256,
        "--prefix-cache-mb",
        min=0,
        help="Memory for recent prompts' key/value states, reused by prompts that start the same (0: off).",
    ),
    draft_tokens: int = typer.Option(
        2,
        "--draft-tokens",
        min=0,
        help="Prompt-lookup draft tokens per greedy request and step, checked in the same pass (0: off).",
    ),
    suffix_draft_tokens: int = typer.Option(
        16,
        "--suffix-draft-tokens",
        min=0,
        help="Most draft tokens per greedy request and step from earlier requests' prompts and replies "
        "(repeated traffic decodes several tokens a step; replies do not change; 0: off).",
    ),
    max_body_bytes: int = typer.Option(
        1_000_000, "--max-body-bytes", min=1, help="Largest request body (413)."
    ),
    max_messages: int = typer.Option(128, "--max-messages", min=1, help="Most messages in one chat request."),
    max_prompt_tokens: int | None = typer.Option(
        None, "--max-prompt-tokens", min=1, help="Longest prompt in tokens (default: the context length)."
    ),
    max_tokens: int = typer.Option(
        2048, "--max-tokens", min=1, help="Largest max_tokens a request may ask for."
    ),
    default_max_tokens: int = typer.Option(512, "--default-max-tokens", min=1, help="max_tokens when unset."),
    log_prompts: bool = typer.Option(False, "--log-prompts", help="Put prompt text in the request log."),
) -> None:
    """Serve MODEL (and its adapters) over an OpenAI-compatible API; open http://HOST:PORT/ to chat."""
    from instructkit.serve.loading import AdapterError, load_served, parse_adapters
    from instructkit.serve.server import ServerConfig, http_url, run_server
    from instructkit.templates import TemplateError

    with user_errors(ValueError):  # a bad setting (an empty --api-key) is refused before the model loads
        cfg = ServerConfig(
            host=host, port=port, api_key=api_key, max_batch=max_batch, max_queue=max_queue,
            prefix_cache_mb=prefix_cache_mb, draft_tokens=draft_tokens,
            suffix_draft_tokens=suffix_draft_tokens,
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
