"""``instructkit chat MODEL``: a terminal conversation with streamed replies, or one reply with ``--prompt``.

instructkit chat runs/quickstart/train            # /reset, /system TEXT, /exit
instructkit chat smollm2-135m-instruct --prompt "What is the capital of France?"
"""

from __future__ import annotations

import typer

from instructkit.cli.common import console, err_console, printable, user_errors
from instructkit.models import ModelNotFoundError

DEFAULT_MODEL = "smollm2-135m-instruct"


def chat(
    model_arg: str | None = typer.Argument(
        None, metavar="MODEL", help=f"Alias, local folder, hub id or trained run (default {DEFAULT_MODEL})."
    ),
    model_opt: str | None = typer.Option(
        None, "--model", "-m", help="Same as MODEL (kept for older scripts)."
    ),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="A LoRA adapter folder to chat with."),
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="Answer this one instruction and exit."),
    system: str | None = typer.Option(None, "--system", help="System message."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Longest reply, in tokens."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, max=2.0, help="0: greedy."),
) -> None:
    """Chat with a model in the terminal (streamed replies; /reset, /system TEXT, /exit)."""
    from instructkit.decoding.engine.sampling import Sampling
    from instructkit.decoding.engine.scheduler import Engine
    from instructkit.serve.chat import ChatSession
    from instructkit.serve.loading import AdapterError, load_served
    from instructkit.templates import TemplateError

    if model_arg and model_opt and model_arg != model_opt:
        raise typer.BadParameter(f"MODEL {model_arg!r} and --model {model_opt!r} disagree; give one")
    model = model_arg or model_opt or DEFAULT_MODEL
    with user_errors(ModelNotFoundError, AdapterError, TemplateError, ValueError):
        served = load_served(model, {"adapter": adapter} if adapter else None)
        if served.template is None:
            raise TemplateError(f"{model} has no chat template; it cannot chat")
    engine = Engine(served.model, served.tokenizer, max_batch=1, activate=served.activate).start()
    session = ChatSession(served, engine, system=system, sampling=Sampling(max_new_tokens, temperature))
    name = served.names[-1] if adapter else model
    try:
        if prompt is not None:
            reply = "".join(session.send(prompt)).strip()
            console.print(f"[bold]user:[/] {printable(prompt)}", highlight=False)
            console.print(f"[bold cyan]{printable(name)}:[/] {printable(reply)}", highlight=False)
            return
        err_console.print(f"chatting with {printable(name)}; {session.COMMANDS}", highlight=False)
        while True:
            try:
                line = console.input("[bold]> [/]")
            except (EOFError, KeyboardInterrupt):
                console.print()
                return
            if not line.strip():
                continue
            if line.startswith("/"):
                keep_going, message = session.command(line)
                err_console.print(message, highlight=False)
                if not keep_going:
                    return
                continue
            try:
                for delta in session.send(line):
                    console.out(printable(delta), end="", highlight=False)
            except KeyboardInterrupt:
                err_console.print("\n(interrupted)")
            console.print()
    finally:
        engine.stop()
