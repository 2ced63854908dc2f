"""What a generation backend is: requests in (chat messages + sampling settings), one reply per request out,
in order. Backends register themselves by name; ``build_backend(name, **params)`` makes one, its params
checked like any config (types, ranges, an unknown parameter named with the known ones).

The types are small and plain on purpose: the request cache (``generate/cache.py``) hashes a request's
messages and ``Sampling`` into its key, so everything that changes a reply must be in them, and nothing else.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from instructkit.config import ConfigError, check_ranges, load

BACKENDS: dict[str, type[Backend]] = {}
ROLES = ("system", "user", "assistant")

OnReply = Callable[[int, "Reply"], None]
"""Called with (index of the request, its reply) as each reply arrives, possibly from a worker thread."""


class BackendError(ConfigError):
    """A backend that cannot run (unknown name or parameter, bad request, a server that refuses the key or
    the model); the message says what to change."""


@dataclass(frozen=True)
class Sampling:
    """How a reply is sampled. Part of the cache key: two requests differing in any field are two requests."""

    temperature: float = 0.0
    """0 is greedy decoding; above 0 samples (with ``top_p``)."""
    top_p: float = 1.0
    """Nucleus sampling: sample from the smallest set of tokens whose probability reaches top_p."""
    max_tokens: int = 256
    """At most this many new tokens per reply (finish_reason "length" when reached)."""
    stop: tuple[str, ...] = ()
    """The reply ends before the first of these strings (a list is accepted and kept as a tuple, so a
    Sampling stays hashable)."""
    seed: int | None = None
    """Seed for sampling; None: the server's choice (openai) or 0 (local)."""

    def __post_init__(self) -> None:
        # normalized so equal settings hash equally in the cache key (1 and 1.0, a list and a tuple)
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        if isinstance(self.stop, str):
            raise BackendError(f"{{key}} is a list of strings, not the string {self.stop!r}", key="stop")
        object.__setattr__(self, "stop", tuple(self.stop))
        if not (self.temperature >= 0 and self.temperature == self.temperature):
            raise BackendError(f"{{key}} must be at least 0, not {self.temperature}", key="temperature")
        if not 0 < self.top_p <= 1:
            raise BackendError(f"{{key}} must be in (0, 1], not {self.top_p}", key="top_p")
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise BackendError(
                f"{{key}} must be a positive integer, not {self.max_tokens!r}", key="max_tokens"
            )
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise BackendError(f"{{key}} holds non-empty strings, not {list(self.stop)!r}", key="stop")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Request:
    """One chat to continue: ``messages`` as [{"role": ..., "content": ...}], and how to sample the reply."""

    messages: list[dict[str, str]]
    sampling: Sampling = field(default_factory=Sampling)

    def __post_init__(self) -> None:
        if not isinstance(self.messages, list) or not self.messages:
            raise BackendError(f"a request needs a non-empty list of messages, got {self.messages!r}")
        for i, m in enumerate(self.messages):
            if not isinstance(m, dict) or set(m) != {"role", "content"}:
                raise BackendError(f"messages[{i}] must be {{role, content}}, got {m!r}")
            if m["role"] not in ROLES or not isinstance(m["content"], str):
                raise BackendError(
                    f"messages[{i}]: role is one of {', '.join(ROLES)} and content a string, got {m!r}"
                )


@dataclass
class Reply:
    """The answer to one request. ``error`` is set (and ``text`` empty) when no usable answer came back —
    a malformed server reply, retries exhausted — so a batch always has one reply per request."""

    text: str
    finish_reason: Literal["stop", "length"] | None
    """"stop": the model ended (or hit a stop string); "length": max_tokens reached; None with an error."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    """Served from the request cache (no tokens spent in this run)."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def failed(cls, reason: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> Reply:
        return cls("", None, prompt_tokens, completion_tokens, error=reason)


@dataclass
class Usage:
    """What a backend spent so far (thread-safe counters; ``cost`` only when prices are configured)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    retries: int = 0
    cost: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, reply: Reply, cost: float | None = None, retries: int = 0) -> None:
        with self._lock:
            self.requests += 1
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens
            self.errors += reply.error is not None
            self.retries += retries
            if cost is not None:
                self.cost = (self.cost or 0.0) + cost

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if not k.startswith("_")}


def register(cls: type[Backend]) -> type[Backend]:
    BACKENDS[cls.name] = cls
    return cls


def build_backend(name: str, **params: Any) -> Backend:
    """The backend ``name`` with ``params`` (an unknown name or parameter is a BackendError listing the
    known ones; values are checked against each field's type and range)."""
    key = name.strip().lower()
    if key not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    return load(BACKENDS[key], params, error=BackendError, noun="parameter")


class Backend:
    """Base class. A registered backend is a dataclass whose init fields are its parameters (each documented
    right under it); ``complete`` answers a batch, ``key`` says what the cache keys its replies by."""

    name: ClassVar[str]

    def __post_init__(self) -> None:
        check_ranges(self, error=BackendError)
        self.usage = Usage()

    def key(self) -> dict[str, Any]:
        """What identifies the backend and model in the cache key: a reply stored under this key is the
        answer a rerun would get (so no URL, API key or concurrency in it)."""
        raise NotImplementedError

    def complete(self, requests: Sequence[Request], on_reply: OnReply | None = None) -> list[Reply]:
        """One reply per request, in order; ``on_reply(i, reply)`` is called as each one is ready (the
        cache stores answers there, so a killed run keeps everything answered before the kill)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections or memory; the default holds none."""
