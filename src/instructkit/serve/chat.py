"""Replies from a chat model, rendered with the model's own chat template: one-shot, or a conversation.

The model is a bundled alias, a local folder or hub id, or a trained run (a run folder, or its
``model/`` folder holding ``instructkit.json``), rebuilt exactly as it was trained.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def load_chat_model(name: str) -> tuple[Any, Any]:
    from instructkit.train.saved_model import is_trained_run, load_trained

    if is_trained_run(name):
        from instructkit.train.tasks import TASKS

        model, tok, info = load_trained(name)
        if not TASKS[info["task"]].generative:
            chat = ", ".join(n for n, t in TASKS.items() if t.generative)
            raise ValueError(f"{name} was trained for {info['task']}, not {chat}; it cannot chat")
        return model, tok
    from instructkit.models import load_model, load_tokenizer

    return load_model(name), load_tokenizer(name)


class ChatSession:
    """A terminal conversation: the history, a system prompt, and streamed replies from the engine.

    Lines starting with ``/`` are commands (``/reset``, ``/system TEXT``, ``/exit``); :meth:`command`
    runs one and says what happened, so a front end only reads lines and prints."""

    COMMANDS = "/reset (forget the conversation), /system TEXT (set the system prompt), /exit"

    def __init__(self, served: Any, engine: Any, *, system: str | None = None, sampling: Any = None):
        from instructkit.decoding.engine.sampling import Sampling

        self.served = served
        self.engine = engine
        self.system = system
        self.sampling = sampling or Sampling(max_tokens=256)
        self.history: list[dict[str, str]] = []

    def messages(self, text: str) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *self.history, {"role": "user", "content": text}]

    def command(self, line: str) -> tuple[bool, str]:
        """Run a ``/`` command: (keep going, message to show). Unknown commands list the known ones."""
        name, _, arg = line.strip().partition(" ")
        if name in ("/exit", "/quit"):
            return False, "bye"
        if name == "/reset":
            self.history = []
            return True, "conversation cleared"
        if name == "/system":
            self.system = arg.strip() or None
            self.history = []
            return True, f"system prompt {'set' if self.system else 'removed'}; conversation cleared"
        return True, f"unknown command {name}; commands: {self.COMMANDS}"

    def send(self, text: str) -> Iterator[str]:
        """Stream the reply to ``text`` (deltas); the exchange joins the history once complete."""
        from instructkit.decoding.engine.scheduler import stream_text

        ids = self.served.prompt_ids(self.messages(text))
        reply = []
        for delta in stream_text(self.engine, ids, self.sampling, self.served.lane_of(self.served.names[-1])):
            reply.append(delta)
            yield delta
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": "".join(reply)}]
