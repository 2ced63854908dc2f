"""The request cache: every answered request stored in an SQLite file as its answer arrives, so a killed or
failed run, rerun, sends no request whose answer is stored, and a generator never pays twice.

A request's key is the sha256 of (the backend's ``key()`` — backend name and model —, the messages, every
``Sampling`` field, seed included), as canonical JSON. Two requests differing in any of these are two
requests; the server URL, API key and concurrency are not in the key, so pointing a rerun at another
replica of the same model reuses the answers.

Durability: the file is in WAL mode with ``synchronous=NORMAL`` and each answer is committed on its own, so
a SIGKILL loses at most the requests in flight (a committed WAL transaction survives the death of the
process; only an OS crash or power loss can take the last ones back). One connection serves every worker
thread behind a lock: SQLite serializes writers anyway, and a commit costs far less than a request.
Errors are not stored, so a rerun retries them. Measured on this project's build machine: storing one answer
(with its commit) takes about 0.07 ms and looking up 2,000 keys 8 ms — nothing next to a request.

The local backend's sampled replies depend on the batch they were generated in (one seed per call, see
``backends/local.py``); a cached reply is a valid sample for its key, not necessarily the one a cold run of
the same batch would draw. Greedy replies do not depend on the batch.

``budget_tokens``: ``CachedBackend`` stops cleanly once the new requests of *this run* (cache hits cost
nothing and are not counted, nor are answers stored by earlier runs) have spent the budget, within one
request of it: it sends the misses in waves, each no larger than the budget left divided by the largest
request seen so far (in the cache or in this run), so near the budget fewer requests fly at once and the last
wave is a single request. When a request costs more than any seen before, the overshoot can exceed one
request. It raises ``BudgetExhausted`` — an exception rather than a flag, so a caller cannot mistake
unsent requests for failed ones — carrying the replies it has (None for requests not sent).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from instructkit.generate.backends.base import Backend, OnReply, Reply, Request

SCHEMA = 1


def request_key(backend_key: dict[str, Any], request: Request) -> str:
    payload = {"backend": backend_key, "messages": request.messages, "sampling": request.sampling.to_dict()}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class CacheError(ValueError):
    """The cache file cannot be read as a request cache (damaged, or another kind of file)."""


class ReplyCache:
    """Answers by request key in an SQLite file (created with its folder). A file that is not a readable
    request cache is a :class:`CacheError` naming it, never silently replaced (its answers were paid for)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._open()
        except sqlite3.DatabaseError as e:
            raise CacheError(
                f"{self.path} is not a readable request cache ({e}); move it aside to start over "
                "(the answers stored in it would be asked, and paid for, again)"
            ) from None

    def _open(self) -> None:
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, backend TEXT, request TEXT, "
                "text TEXT, finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))

    def get_many(self, keys: Sequence[str]) -> dict[str, Reply]:
        found: dict[str, Reply] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 500):  # SQLite's bound-parameter limit
                chunk = unique[start : start + 500]
                rows = self._db.execute(
                    "SELECT key, text, finish_reason, prompt_tokens, completion_tokens FROM replies "
                    f"WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for key, text, finish, pt, ct in rows:
                    found[key] = Reply(text, finish, pt, ct, cached=True)
        return found

    def put(self, key: str, backend_key: dict[str, Any], request: Request, reply: Reply) -> None:
        """Store one answer and commit it (autocommit: each statement is its own transaction)."""
        if reply.error is not None:
            raise ValueError("error replies are not cached")
        req = json.dumps({"messages": request.messages, "sampling": request.sampling.to_dict()})
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    json.dumps(backend_key, sort_keys=True),
                    req,
                    reply.text,
                    reply.finish_reason,
                    reply.prompt_tokens,
                    reply.completion_tokens,
                    time.time(),
                ),  # fmt: skip
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class BudgetExhausted(RuntimeError):
    """The token budget is spent. ``replies`` has one entry per request of the call that stopped: the
    Reply where one came (from the cache or this run), None for requests not sent."""

    def __init__(self, replies: list[Reply | None], spent: int, budget: int, sent: int) -> None:
        self.replies = replies
        self.spent, self.budget, self.sent = spent, budget, sent
        unsent = sum(r is None for r in replies)
        super().__init__(
            f"token budget of {budget:,} spent: {spent:,} tokens on {sent:,} new requests in this run; "
            f"{unsent:,} of {len(replies):,} requests of this batch not sent. Their answers so far are in "
            "the cache: rerun with a larger budget to continue from there"
        )


@dataclass
class CacheStats:
    hits: int = 0
    """Requests answered from the cache."""
    misses: int = 0
    """Requests sent to the backend."""
    errors: int = 0
    """Sent requests that came back as an error reply (not stored)."""
    prompt_tokens: int = 0
    """Spent in this run on sent requests."""
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class CachedBackend(Backend):
    """Any backend behind the request cache (module docstring): looks every request up first, sends only the
    misses (a request repeated within a batch is sent once), stores each answer as it arrives."""

    def __init__(self, backend: Backend, path: str | Path, budget_tokens: int | None = None) -> None:
        if budget_tokens is not None and budget_tokens < 1:
            raise ValueError(f"budget_tokens must be a positive number of tokens, not {budget_tokens}")
        self.backend = backend
        self.cache = ReplyCache(path)
        self.budget_tokens = budget_tokens
        self.stats = CacheStats()
        self._largest = 0  # the most tokens one request took (cache or this run): sizes the budget waves
        self._lock = threading.Lock()

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.backend.name

    @property
    def usage(self):  # type: ignore[override]
        return self.backend.usage

    def key(self) -> dict[str, Any]:
        return self.backend.key()

    def close(self) -> None:
        self.cache.close()
        self.backend.close()

    @property
    def spent(self) -> int:
        return self.stats.tokens

    def complete(self, requests: Sequence[Request], on_reply: OnReply | None = None) -> list[Reply]:
        bkey = self.backend.key()
        keys = [request_key(bkey, r) for r in requests]
        hits = self.cache.get_many(keys)
        replies: list[Reply | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}  # key -> indices asking it (sent once)
        for i, k in enumerate(keys):
            if k in hits:
                replies[i] = hits[k]
                self._largest = max(self._largest, hits[k].tokens)
                if on_reply:
                    on_reply(i, hits[k])
            else:
                todo.setdefault(k, []).append(i)
        self.stats.hits += len(requests) - sum(len(v) for v in todo.values())
        pending = list(todo)
        while pending:
            n = self._wave_size(len(pending))
            if n == 0:
                raise BudgetExhausted(replies, self.spent, self.budget_tokens or 0, self.stats.misses)
            wave, pending = pending[:n], pending[n:]
            self._send(wave, todo, requests, bkey, replies, on_reply)
        return [r for r in replies if r is not None]

    def _wave_size(self, pending: int) -> int:
        if self.budget_tokens is None:
            return pending
        left = self.budget_tokens - self.spent
        if left <= 0:
            return 0
        if not self._largest:  # nothing seen yet: one request tells how large one is
            return 1
        return max(1, min(pending, left // self._largest))

    def _send(self, wave: list[str], todo: dict[str, list[int]], requests: Sequence[Request],
              bkey: dict[str, Any], replies: list[Reply | None], on_reply: OnReply | None) -> None:  # fmt: skip
        batch = [requests[todo[k][0]] for k in wave]

        def arrived(j: int, reply: Reply) -> None:
            key = wave[j]
            with self._lock:
                self.stats.misses += 1
                self.stats.errors += reply.error is not None
                self.stats.prompt_tokens += reply.prompt_tokens
                self.stats.completion_tokens += reply.completion_tokens
                self._largest = max(self._largest, reply.tokens)
            if reply.error is None:
                self.cache.put(key, bkey, batch[j], reply)
            for i in todo[key]:
                replies[i] = reply
                if on_reply:
                    on_reply(i, reply)

        got = self.backend.complete(batch, on_reply=arrived)
        for j, reply in enumerate(got):  # a backend that never calls on_reply still gets its answers stored
            if replies[todo[wave[j]][0]] is None:
                arrived(j, reply)
