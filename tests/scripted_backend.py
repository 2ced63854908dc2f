"""A backend for generator tests that answers from a script instead of a model.

``ScriptedBackend(answer)``: ``answer(request) -> str | Reply`` decides each reply from the request (its last
user message is usually enough: the generators' prompts say what they ask). Registered as ``scripted`` so
the cache keys its replies like any backend's; ``calls`` counts requests that reached it (cache hits never
do)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from instructkit.generate.backends.base import Backend, OnReply, Reply, Request


@dataclass
class ScriptedBackend(Backend):
    name = "scripted"
    answer: Callable[[Request], str | Reply] = field(default=lambda r: "")
    model: str = "script"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.calls = 0
        self.prompts: list[str] = []
        self._lock = threading.Lock()

    def key(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    def complete(self, requests: Sequence[Request], on_reply: OnReply | None = None) -> list[Reply]:
        out = []
        for i, req in enumerate(requests):
            with self._lock:
                self.calls += 1
                self.prompts.append(req.messages[-1]["content"])
            got = self.answer(req)
            reply = (
                got
                if isinstance(got, Reply)
                else Reply(got, "stop", len(req.messages[-1]["content"]) // 4, len(got) // 4 + 1)
            )
            self.usage.add(reply)
            if on_reply:
                on_reply(i, reply)
            out.append(reply)
        return out


def last_user(request: Request) -> str:
    return request.messages[-1]["content"]
