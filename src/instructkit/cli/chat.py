"""``instructkit chat``: one reply from a model to one instruction, with its own chat template."""

from __future__ import annotations

import typer

from instructkit.cli._common import console, user_errors
from instructkit.models import ModelNotFoundError


def chat(
    prompt: str = typer.Option(..., "--prompt", "-p", help="The instruction to answer."),
    model: str = typer.Option(
        "smollm2-135m-instruct", "--model", "-m", help="Alias, local folder or hub id."
    ),
    system: str | None = typer.Option(None, "--system", help="Optional system message."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1, help="Longest reply, in tokens."),
) -> None:
    """Print one greedy reply (an interactive session is not built yet)."""
    from instructkit.serve.chat import reply

    with user_errors(ModelNotFoundError):
        text = reply(model, prompt, system=system, max_new_tokens=max_new_tokens)
    console.print(f"[bold]user:[/] {prompt}", highlight=False)
    console.print(f"[bold cyan]{model}:[/] {text}", highlight=False)
