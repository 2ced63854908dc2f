"""A request in flight: what it asked for, what it has generated, and how its text reaches the caller.

The engine thread writes a request's tokens; the caller reads events from another thread (:meth:`Request.
events`) or from an asyncio loop (:meth:`Request.aevents`, delivered with ``call_soon_threadsafe`` on the
loop it was submitted from). Each event is ``("delta", text)`` and the last is ``("done", Result)``.

Text is handed out as it becomes final: :meth:`Request.append` holds back an incomplete UTF-8 character
(the tokenizer decodes it as U+FFFD until its last byte arrives) and any tail that may still grow into a
stop string, so the deltas of a reply joined together are always its final text. A caller that does not
stream (``deltas=False``) gets only the final event: a delta per token would wake its event loop once per
token for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from instructkit.decoding.engine.sampling import Sampling


class QueueFull(RuntimeError):
    """The waiting queue is at its bound; the caller should retry after ``retry_after`` seconds."""

    def __init__(self, size: int, retry_after: int = 1):
        super().__init__(f"the server is busy: {size} requests are already waiting; retry shortly")
        self.retry_after = retry_after


class EngineStopped(RuntimeError):
    """The engine is not running (stopped, or never started)."""


@dataclass
class Result:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string), "length", "cancelled", "error"
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] = field(default_factory=list)
    error: str | None = None


_ids = itertools.count(1)


class Request:
    """One generation in flight. Iterate :meth:`events` (threads) or :meth:`aevents` (asyncio): each
    event is ``("delta", text)`` and the last is ``("done", Result)``."""

    def __init__(
        self,
        prompt_ids: Sequence[int],
        sampling: Sampling,
        lane: str | None,
        eos: set[int],
        deltas: bool = True,
    ):
        self.id = next(_ids)
        self.deltas = deltas  # False: only the final ("done", Result) event (a caller not streaming)
        self.prompt_ids = list(prompt_ids)
        self.sampling = sampling
        self.lane = lane
        self.eos = eos
        self.generated: list[int] = []
        self.drafted = self.kept = 0  # prompt-lookup draft tokens checked for this request, and kept
        self.looked_up = False  # whether this step's draft came from prompt lookup (else earlier replies)
        self.suffix_cap: int | None = None  # most drafts from earlier replies next step (None: any)
        self.sent = 0  # characters of text already handed out as deltas
        self.text = ""
        self.result: Result | None = None
        self.cancelled = False
        self.generator: torch.Generator | None = None
        if sampling.temperature > 0:
            self.generator = torch.Generator()
            if sampling.seed is not None:
                self.generator.manual_seed(sampling.seed)
            else:
                self.generator.seed()
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aq: asyncio.Queue | None = None
        with contextlib.suppress(RuntimeError):  # submitted from a coroutine: deliver on its loop
            self._loop = asyncio.get_running_loop()
            self._aq = asyncio.Queue()

    # ---------------------------------------------------------------- tokens (engine thread)
    def token_limit(self, context_length: int | None) -> int:
        """The most tokens this reply may have: ``max_tokens``, or less where the context ends first."""
        limit = self.sampling.max_tokens
        if context_length:
            limit = min(limit, context_length - len(self.prompt_ids))
        return limit

    def append(self, token: int, tokenizer: Any, context_length: int | None) -> str | None:
        """Record one generated token and hand out the text that became final; the finish reason
        (``"stop"``: EOS or a stop string, ``"length"``) when the reply is complete, else None."""
        s = self.sampling
        self.generated.append(token)
        if token in self.eos:
            return "stop"
        text = tokenizer.decode(self.generated, skip_special_tokens=True)
        for stop in s.stop:
            at = text.find(stop, max(0, len(self.text) - len(stop)))
            if at >= 0:
                self.text = text[:at]
                return "stop"
        self.text = text
        if len(self.generated) >= self.token_limit(context_length):
            return "length"
        # Hold back an incomplete UTF-8 character and any tail that may still grow into a stop string.
        safe = len(text.rstrip("\ufffd"))
        for stop in s.stop:
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    safe = min(safe, len(text) - k)
                    break
        if safe > self.sent:
            self.deliver(("delta", text[self.sent : safe]))
            self.sent = safe
        return None

    def flush(self) -> None:
        """Hand out what was held back (a partial stop string that never completed): the reply is over."""
        if len(self.text) > self.sent:
            self.deliver(("delta", self.text[self.sent :]))
            self.sent = len(self.text)

    # ---------------------------------------------------------------- delivery (engine thread -> caller)
    def deliver(self, event: tuple[str, Any]) -> None:
        if event[0] == "delta" and not self.deltas:
            return  # nobody reads them; each would wake the caller's event loop once per token
        if self._loop is not None and self._aq is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
                self._loop.call_soon_threadsafe(self._aq.put_nowait, event)
        else:
            self._q.put(event)

    def finish(self, reason: str, error: str | None = None) -> None:
        """Answer the caller with the final result (once: later calls are no-ops)."""
        if self.result is not None:
            return
        self.result = Result(
            self.text, reason, len(self.prompt_ids), len(self.generated), list(self.generated), error
        )
        self.deliver(("done", self.result))

    # ---------------------------------------------------------------- reading (caller)
    def events(self) -> Iterator[tuple[str, Any]]:
        while True:
            kind, value = self._q.get()
            yield kind, value
            if kind == "done":
                return

    async def aevents(self) -> AsyncIterator[tuple[str, Any]]:
        assert self._aq is not None, "aevents() needs a request submitted from a coroutine"
        while True:
            kind, value = await self._aq.get()
            yield kind, value
            if kind == "done":
                return

    def cancel(self) -> None:
        """Free the slot: the engine drops the row before its next step (or never admits it)."""
        self.cancelled = True
