"""Continuous batching for causal LMs: concurrent requests share each decoding step's forward pass.

One background thread owns the model. Each step is one forward pass per adapter lane over a flat
sequence: every running row's next token, the draft tokens of rows that have some, and the new tokens of
prompts admitted since the last step (each prefilled after the longest prefix it shares with a recent prompt
of the same lane: :class:`PrefixCache`). A forward pass reads every weight once, and on a CPU that is most
of its cost (about 55 of the ~100 ms an 8-row step of the bundled model takes on one thread), so a prompt
that rides along in a decoding step costs only its tokens' share instead of a pass of its own. The
attention of each part is the ``sdpa`` call a separate pass would make (:class:`_Plan`, plugged in through
transformers' attention interface): running rows attend to their lane's key/value buffers, left-padded to
a common length with a per-row mask and written one column per step in place; a joining prompt attends
causally to its own buffer and then joins the lane's. A finished row (EOS, a stop string,
``max_tokens``, a client gone) leaves the batch at once and its caller gets the result at once.

Draft tokens are prompt-lookup speculation (:func:`lookup_draft`): for a greedy row, the tokens that
followed the last few tokens' earlier occurrence in its prompt or reply. The step computes the logits
after each draft token too and keeps the drafts greedy decoding picks, so a reply is the same with or
without them, in fewer steps. A row can also draft from the prompts and replies of requests that finished
earlier (:class:`SuffixDrafts`): a question asked again gets its earlier greedy reply as drafts, up to 16
tokens a step. On the load benchmark (128 requests over 40 questions, 8 clients, one thread) that cut the
steps from 610 to 339 and took requests/s from 1.47 to 2.13 in-process, replies identical.

Why by hand rather than transformers' continuous-batching manager: that one needs paged attention
kernels and a static block budget, does not run adapters side by side, and (5.x) does not take per-row
stop strings. Greedy replies match one-request ``generate`` (the tests compare them token for token).
A model whose attention does not go through the attention interface as ``sdpa`` is batched the older
way: each prompt prefilled in a pass of its own, then merged into the batch.

Requests for different LoRA adapters run in separate *lanes* (one running batch each, stepped in
turn), because the active adapter is a property of the model, not of a row. Sampling is per request
(temperature 0 = greedy, ``top_p``, a seeded ``torch.Generator`` per request, so a seeded reply does
not depend on what else is in the batch). Models whose cache is not a plain per-layer key/value list
(sliding-window or linear-attention layers) are served one request at a time, and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger("instructkit.serve")


class QueueFull(RuntimeError):
    """The waiting queue is at its bound; the caller should retry after ``retry_after`` seconds."""

    def __init__(self, size: int, retry_after: int = 1):
        super().__init__(f"the server is busy: {size} requests are already waiting; retry shortly")
        self.retry_after = retry_after


class EngineStopped(RuntimeError):
    """The engine is not running (stopped, or never started)."""


@dataclass
class Sampling:
    """How one request is decoded. ``temperature`` 0 is greedy (``top_p`` and ``seed`` then unused)."""

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


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

    # ---------------------------------------------------------------- delivery (engine thread -> caller)
    def _push(self, event: tuple[str, Any]) -> None:
        if event[0] == "delta" and not self.deltas:
            return  # nobody reads them; each would wake the caller's event loop once per token
        if self._loop is not None and self._aq is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
                self._loop.call_soon_threadsafe(self._aq.put_nowait, event)
        else:
            self._q.put(event)

    def _finish(self, reason: str, error: str | None = None) -> None:
        if self.result is not None:
            return
        self.result = Result(
            self.text, reason, len(self.prompt_ids), len(self.generated), list(self.generated), error
        )
        self._push(("done", self.result))

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


class _Lane:
    """The running batch of one adapter: rows, their KV cache (left-padded), mask, positions.

    ``layers`` holds, per layer, preallocated key and value buffers ``[rows, heads, capacity, dim]`` of
    which the first ``length`` columns are used: a decoding step writes its new column in place
    (:class:`_Slot`) instead of concatenating the whole cache into a new tensor, as ``DynamicCache``
    does. Measured on the bundled model (8 rows, 160 positions, 1 thread): the concatenations were 20% of
    a decoding step on a quiet machine and half of it when other jobs were reading memory too."""

    def __init__(self, name: str | None):
        self.name = name
        self.rows: list[Request] = []
        self.layers: list[list[torch.Tensor]] = []  # per layer: [keys, values] buffers, [B, heads, cap, dim]
        self.mask = torch.zeros((0, 0), dtype=torch.long)
        self.positions = torch.zeros(0, dtype=torch.long)
        self.next_tokens = torch.zeros(0, dtype=torch.long)
        self.pending: list[Request] = []  # admitted, prefilled in the lane's next step (packed mode)

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    @property
    def capacity(self) -> int:
        return self.layers[0][0].shape[2] if self.layers else 0


_HEADROOM = 64  # columns allocated past the longest row: a buffer grows once per 64 decoding steps


def _buffers(rows: list[torch.Tensor], width: int, capacity: int) -> torch.Tensor:
    """One buffer ``[sum of rows, heads, capacity, dim]`` holding each part right-aligned at column
    ``width`` (left padding), zeros elsewhere (masked out, and finite)."""
    first = rows[0]
    batch = sum(r.shape[0] for r in rows)
    out = first.new_zeros((batch, first.shape[1], capacity, first.shape[3]))
    at = 0
    for r in rows:
        out[at : at + r.shape[0], :, width - r.shape[2] : width] = r
        at += r.shape[0]
    return out


def _slot_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class _Slot(DynamicLayer):
        """A cache layer over a lane's preallocated buffers: ``update`` writes the new columns in place and
        returns views of the used part (what ``DynamicLayer`` returns, without the copy)."""

        _layer_type = None  # never registered as transformers' layer of any type

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
            super().__init__()
            self.kbuf, self.vbuf, self.used = keys, values, length
            self.keys, self.values = keys[:, :, :length], values[:, :, :length]
            self.device = keys.device
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            end = self.used + key_states.shape[-2]
            self.kbuf[:, :, self.used : end] = key_states
            self.vbuf[:, :, self.used : end] = value_states
            self.used = end
            self.keys, self.values = self.kbuf[:, :, :end], self.vbuf[:, :, :end]
            return self.keys, self.values

    return _Slot


def _cache_of(out: Any) -> Any:
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def _pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


_PACKED = "instructkit_packed"  # the attention implementation name registered with transformers
_registered = False


def _register_packed_attention() -> None:
    """Register :func:`_packed_attention` with transformers' attention interface (once per process).

    transformers routes every attention call of its models through ``ALL_ATTENTION_FUNCTIONS`` under the
    config's ``_attn_implementation`` name (how its own continuous batching plugs paged attention in); the
    mask interface gets ``sdpa_mask`` under the same name, so a call without a plan is exactly ``sdpa``."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def _packed_attention(
        module: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        plan = kwargs.pop("instructkit_plan", None)
        if plan is None:  # any other caller of the model: plain sdpa
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        return plan.attend(module, query, key, value, sdpa_attention_forward, kwargs), None

    AttentionInterface.register(_PACKED, _packed_attention)
    AttentionMaskInterface.register(_PACKED, sdpa_mask)
    _registered = True


@dataclass
class _Join:
    """A request prefilled inside a step: its prompt's key/value buffers ``[1, kv heads, n, dim]`` per layer,
    the first ``m`` columns taken from the prefix cache, columns ``m..n`` written by the step."""

    req: Request
    layers: list[list[torch.Tensor]]
    m: int
    n: int
    mask: torch.Tensor | None  # [1, 1, n - m, n] causal mask offset by m (None when m == 0: sdpa's is_causal)


class _Plan:
    """What one packed step's attention needs. The step's tokens are one flat sequence: first every decoding
    row's next token (attending to its lane buffer row: one batched ``sdpa``, exactly the separate decoding
    pass), then each drafting row's draft tokens (attending to its row and, causally, to each other), then
    each joining prompt's new tokens (attending causally to their own buffers, as a separate prefill would).
    """

    def __init__(
        self,
        lane: _Lane,
        used: int,
        mask: torch.Tensor | None,
        drafts: list[tuple[torch.Tensor, int, torch.Tensor]],
        joins: list[_Join],
    ):
        self.lane, self.used, self.mask, self.drafts, self.joins = lane, used, mask, drafts, joins
        self.rows = len(lane.rows)

    def attend(
        self,
        module: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        sdpa: Callable[..., tuple[torch.Tensor, Any]],
        kwargs: dict[str, Any],
    ) -> torch.Tensor:
        layer = module.layer_idx
        parts = []
        r, used = self.rows, self.used
        if r:
            kb, vb = self.lane.layers[layer]
            kb[:, :, used] = key[0, :, :r].transpose(0, 1)
            vb[:, :, used] = value[0, :, :r].transpose(0, 1)
            q = query[0, :, :r].transpose(0, 1).unsqueeze(2)  # [rows, heads, 1, dim], as a batched decode
            out, _ = sdpa(module, q, kb[:, :, : used + 1], vb[:, :, : used + 1], self.mask, **kwargs)
            parts.append(out.reshape(1, r, *out.shape[2:]))
        at = r
        for index, k, mask in self.drafts:  # rows drafting k tokens each, one sdpa call for all of them
            n, end = len(index), used + 1 + k
            heads, dim = key.shape[1], key.shape[3]
            kb[index, :, used + 1 : end] = key[0, :, at : at + n * k].view(heads, n, k, dim).transpose(0, 1)
            vb[index, :, used + 1 : end] = value[0, :, at : at + n * k].view(heads, n, k, dim).transpose(0, 1)
            q = query[0, :, at : at + n * k].view(query.shape[1], n, k, dim).transpose(0, 1)
            keys, values = kb[:, :, :end].index_select(0, index), vb[:, :, :end].index_select(0, index)
            out, _ = sdpa(module, q, keys, values, mask, **kwargs)  # [n, k, heads, dim]
            parts.append(out.reshape(1, n * k, *out.shape[2:]))
            at += n * k
        for j in self.joins:
            s = j.n - j.m
            kj, vj = j.layers[layer]
            kj[:, :, j.m :] = key[:, :, at : at + s]
            vj[:, :, j.m :] = value[:, :, at : at + s]
            out, _ = sdpa(module, query[:, :, at : at + s], kj, vj, j.mask, **kwargs)
            parts.append(out)
            at += s
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _draft_order(drafts: dict[int, list[int]]) -> list[int]:
    """The order of drafting rows in a step's flat sequence: by draft length, then row (one group per
    length, each group one attention call)."""
    return sorted(drafts, key=lambda row: (len(drafts[row]), row))


def lookup_draft(context: Sequence[int], k: int, longest: int = 3, shortest: int = 2) -> list[int]:
    """Up to ``k`` draft tokens by prompt lookup: what followed the most recent earlier occurrence of the
    context's last n tokens (n from ``longest`` down to ``shortest``), in the prompt or the reply so far.

    The standard n-gram speculation of servers (vLLM's ``ngram`` method, transformers' ``prompt_lookup``):
    replies restate their question and repeat their own phrases. Measured on the load benchmark's replies
    (bundled model, greedy): 2 draft tokens from 2-3-grams give 1.28 tokens per row per step for 0.43 draft
    tokens computed; 1-grams draft three times as much for little more (1.37), so they are not used."""
    ctx = list(context)
    for n in range(longest, shortest - 1, -1):
        if len(ctx) <= n:
            continue
        tail = ctx[-n:]
        for start in range(len(ctx) - n - 1, -1, -1):
            if ctx[start : start + n] == tail:
                return ctx[start + n : start + n + k]
    return []


class PrefixCache:
    """Prompt key/value states of recent requests, per adapter lane, so a new prompt that starts like an
    earlier one prefills only the part after their longest common prefix (what vLLM calls automatic prefix
    caching). Chat prompts share a lot: the template's system turn alone is about 30 of the ~55 tokens of a
    typical SmolLM2 prompt, and repeated prompts (retries, evaluation sets, several clients asking the same
    thing) share everything. A prompt's keys and values over its first ``m`` tokens depend on those tokens
    only (causal attention), so a stored prompt's first ``m`` columns are exact for any prompt that starts
    with the same ``m`` tokens.

    Bounded by ``max_bytes`` (least recently used entries go first); written by hand because the entries
    are tensors owned by the engine thread and the lookup is a longest-common-prefix match, which no cache
    library offers. A linear scan over the entries is enough at this scale (hundreds of entries, a few
    microseconds each)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: dict[tuple[str | None, tuple[int, ...]], list[list[torch.Tensor]]] = {}
        self.stats = {"lookups": 0, "hits": 0, "reused_tokens": 0, "prompt_tokens": 0}

    @staticmethod
    def _size(kv: list[list[torch.Tensor]]) -> int:
        return sum(t.numel() * t.element_size() for pair in kv for t in pair)

    def lookup(self, lane: str | None, ids: Sequence[int]) -> tuple[int, list[list[torch.Tensor]] | None]:
        """``(m, kv)``: the longest stored prefix of ``ids`` (at most ``len(ids) - 1`` tokens, so the last
        token is always computed and gives the next token's logits), or ``(0, None)``."""
        self.stats["lookups"] += 1
        self.stats["prompt_tokens"] += len(ids)
        best, best_key = 0, None
        limit = len(ids) - 1
        for key in self._entries:
            if key[0] != lane:
                continue
            stored = key[1]
            n = min(len(stored), limit)
            m = 0
            while m < n and stored[m] == ids[m]:
                m += 1
            if m > best:
                best, best_key = m, key
        if best_key is None:
            return 0, None
        kv = self._entries.pop(best_key)
        self._entries[best_key] = kv  # most recently used last
        self.stats["hits"] += 1
        self.stats["reused_tokens"] += best
        return best, [[k[:, :, :best], v[:, :, :best]] for k, v in kv]

    def store(self, lane: str | None, ids: Sequence[int], kv: list[list[torch.Tensor]]) -> None:
        key = (lane, tuple(ids))
        if key in self._entries or self.max_bytes <= 0:
            return
        size = self._size(kv)
        if size > self.max_bytes:
            return
        self._entries[key] = kv
        self.bytes += size
        while self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self.bytes -= self._size(self._entries.pop(oldest))


class SuffixDrafts:
    """Draft tokens from the token sequences (prompt + reply) of requests that finished earlier, per adapter
    lane: where a running row's last ``key`` tokens occurred in a stored sequence, the tokens that followed
    them there. This is suffix speculation (SuffixDecoding; vLLM's ``suffix`` method): served traffic
    repeats itself (the same question from several clients, evaluation sets run again, retries, agents
    re-asking with the same context), and a greedy reply to a prompt seen before follows the earlier reply.
    Like any draft, the tokens are checked in the step and kept only where greedy decoding picks them, so
    replies do not change.

    A match must span ``key`` tokens (8): the chat template's assistant header alone is about 5, so a
    shorter match would draft one question's answer for another. Among the stored places of those 8
    tokens the one whose match reaches furthest back (up to 64 tokens) wins, the most recent on a tie.
    Bounded by ``max_tokens`` stored tokens (oldest sequences go first); an 8-token tuple key per stored
    token, about 200 bytes each, so the default 100,000 tokens hold a few thousand replies in ~20 MB.
    Written by hand: speculative decoding libraries draft inside their own generate loops, not for a
    batch assembled by this engine."""

    key = 8
    reach = 64  # how far back a match is compared, to rank the candidates
    candidates = 16  # the most recent places of a key that are compared

    def __init__(self, max_tokens: int = 100_000):
        self.max_tokens = max_tokens
        self.tokens = 0
        self._seqs: dict[int, tuple[str | None, list[int]]] = {}
        self._index: dict[tuple[str | None, tuple[int, ...]], list[tuple[int, int]]] = {}
        self._next = 0

    def add(self, lane: str | None, tokens: Sequence[int]) -> None:
        tokens = list(tokens)
        if len(tokens) <= self.key or self.max_tokens <= 0 or len(tokens) > self.max_tokens:
            return
        sid, self._next = self._next, self._next + 1
        self._seqs[sid] = (lane, tokens)
        self.tokens += len(tokens)
        for end in range(self.key, len(tokens)):
            self._index.setdefault((lane, tuple(tokens[end - self.key : end])), []).append((sid, end))
        while self.tokens > self.max_tokens:
            self._drop(next(iter(self._seqs)))

    def _drop(self, sid: int) -> None:
        lane, tokens = self._seqs.pop(sid)
        self.tokens -= len(tokens)
        for end in range(self.key, len(tokens)):
            k = (lane, tuple(tokens[end - self.key : end]))
            kept = [e for e in self._index.get(k, ()) if e[0] != sid]
            if kept:
                self._index[k] = kept
            else:
                self._index.pop(k, None)

    def lookup(self, lane: str | None, context: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens that followed the longest stored match of the context's tail, or ``[]``."""
        if k <= 0 or len(context) < self.key:
            return []
        places = self._index.get((lane, tuple(context[-self.key :])))
        if not places:
            return []
        best, best_len = None, -1
        for sid, end in reversed(places[-self.candidates :]):
            tokens = self._seqs[sid][1]
            if end >= len(tokens):
                continue
            n = self.key
            while n < self.reach and n < end and n < len(context) and tokens[end - n - 1] == context[-n - 1]:
                n += 1
            if n > best_len:
                best, best_len = (tokens, end), n
        if best is None:
            return []
        tokens, end = best
        return tokens[end : end + min(k, best_len)]


class Engine:
    """The batching loop. ``activate(lane)`` returns a context manager that makes the model run with that
    lane's adapter (``None``: the base model); a model without adapters needs none."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch: int = 8,
        max_queue: int = 64,
        activate: Callable[[str | None], AbstractContextManager] | None = None,
        prefix_cache_mb: float = 256,
        draft_tokens: int = 2,
        suffix_draft_tokens: int = 16,
    ):
        if max_batch < 1 or max_queue < 0 or draft_tokens < 0 or suffix_draft_tokens < 0:
            raise ValueError("max_batch must be >= 1, max_queue, draft_tokens and suffix_draft_tokens >= 0")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.activate = activate or (lambda lane: contextlib.nullcontext())
        self.device = next(model.parameters()).device
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id is not None:
            eos.append(tokenizer.eos_token_id)
        self.eos = set(eos)
        # transformers 5.2x renamed ``past_key_values`` to ``cache`` (the old name warns, then goes away)
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT passes it on
        params = inspect.signature(inner.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.context_length = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        self._waiting: deque[Request] = deque()
        self._lanes: dict[str | None, _Lane] = {}
        self._cond = threading.Condition()
        self._step_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._batchable: bool | None = None  # decided on the first prefill (the model's cache layout)
        self.prefix_cache = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb > 0 else None
        self._slot: type | None = None  # the in-place cache layer class (made once, on first use)
        self._packed = False  # prompts are prefilled inside decoding steps (decided by the start-up probe)
        self._attn_before: str | None = None  # the model's attention implementation before packing
        self._kv: tuple[int, int, torch.dtype] | None = None  # key/value heads, head dim, dtype
        self.stats: dict[str, Any] = {"requests": 0, "finished": 0, "cancelled": 0, "steps": 0, "max_rows": 0}
        self.stats["busy_s"] = 0.0  # seconds spent prefilling and decoding (the rest: waiting for work)
        self.stats.update(packed_prompts=0, draft_tokens=0, accepted_tokens=0)
        self.draft_tokens = draft_tokens  # prompt-lookup draft tokens per greedy row and step (0: none)
        self.suffix_draft_tokens = suffix_draft_tokens  # drafts from earlier requests' sequences (0: none)
        self.suffix_drafts = SuffixDrafts() if suffix_draft_tokens > 0 else None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Engine:
        if self._thread is None:
            self.model.eval()
            self._probe()
            self._thread = threading.Thread(target=self._run, name="instructkit-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._attn_before is not None:  # give the model back as it came
            self._inner().set_attn_implementation(self._attn_before)
            self._attn_before, self._packed = None, False

    def _inner(self) -> Any:
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    @torch.inference_mode()
    def _probe(self) -> None:
        """Decide, on a 4-token prompt, how requests share forward passes.

        A model whose cache is a plain key/value list per layer is batched. One whose attention goes through
        transformers' attention interface (``sdpa`` today) is also *packed*: a joining prompt is prefilled
        inside the next decoding step instead of in a forward pass of its own. Each forward pass reads every
        weight once (~55 ms of a ~100 ms 8-row step of the bundled model on one thread), so a prompt that
        rides along costs only its tokens' share. The packed path must give the plain forward's logits on the
        probe (max abs diff <= 1e-4 in fp32), or the engine keeps the plain path and says why."""
        ids = torch.arange(1, 5, device=self.device)[None]
        with self.activate(None):
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
        layers = getattr(_cache_of(out), "layers", None)
        from transformers.cache_utils import DynamicLayer

        self._batchable = bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
        if not self._batchable:
            log.warning("this model's KV cache is not a plain key/value list: serving one request at a time")
            return
        keys = layers[0].keys
        self._kv = (keys.shape[1], keys.shape[3], keys.dtype)
        inner = self._inner()
        before = getattr(inner.config, "_attn_implementation", None)
        if before != "sdpa" or not getattr(inner, "_supports_attention_backend", False):
            log.info("attention is %s: prompts are prefilled in passes of their own", before)
            return
        _register_packed_attention()
        inner.set_attn_implementation(_PACKED)
        if inner.config._attn_implementation != _PACKED:
            return
        self._attn_before, self._packed = before, True
        probe = Request(ids[0].tolist(), Sampling(), None, self.eos, deltas=False)
        join = self._new_join(probe, 0, None)
        try:
            logits = self._forward(_Lane(None), [join])
            diff = float((logits[0].float() - out.logits[0, -1].float()).abs().max())
            why = f"differs from the plain forward ({diff:.2e})"
            ok = diff <= (1e-4 if logits.dtype == torch.float32 else 5e-2)  # half precision rounds more
        except Exception as e:  # an attention variant the plan does not cover (e.g. soft-capped scores)
            ok, why = False, f"failed ({type(e).__name__}: {e})"
        if not ok:
            log.warning("packed prefill %s: prefilling each prompt in a pass of its own", why)
            inner.set_attn_implementation(before)
            self._attn_before, self._packed = None, False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the decoding loop between two steps (maintenance; tests use it to fill the queue)."""
        with self._step_lock:
            yield

    @property
    def active(self) -> int:  # read from other threads too
        return sum(len(lane.rows) + len(lane.pending) for lane in list(self._lanes.values()))

    @property
    def batching(self) -> str:
        """How requests share forward passes: ``packed`` (prompts prefilled inside decoding steps),
        ``separate-prefill`` (each prompt in a pass of its own, then batched) or ``one-at-a-time``."""
        if self._packed:
            return "packed"
        return "separate-prefill" if self._batchable and self.max_batch > 1 else "one-at-a-time"

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def waiting_cancelled(self) -> int:
        """Waiting requests whose client is gone (dropped when they reach the front of the queue)."""
        return sum(1 for r in list(self._waiting) if r.cancelled)

    def snapshot(self) -> list[dict[str, Any]]:
        """The requests being decoded now: id, lane, tokens so far, whether cancelled (tests, /health)."""
        return [
            {"id": r.id, "lane": r.lane, "generated": len(r.generated), "cancelled": r.cancelled}
            for lane in list(self._lanes.values())
            for r in list(lane.rows) + list(lane.pending)
        ]

    # ---------------------------------------------------------------- submitting
    def submit(
        self, prompt_ids: Sequence[int], sampling: Sampling, lane: str | None = None, *, deltas: bool = True
    ) -> Request:
        """Queue a request; raises QueueFull when ``max_queue`` requests already wait for a slot.
        ``deltas=False``: deliver only the final result (no text event per token)."""
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        req = Request(prompt_ids, sampling, lane, self.eos, deltas)
        with self._cond:
            if self._stopping or self._thread is None:
                raise EngineStopped("the generation engine is not running")
            free = self.max_batch - self.active
            if len(self._waiting) >= self.max_queue + max(free, 0):
                raise QueueFull(len(self._waiting))
            self._waiting.append(req)
            self.stats["requests"] += 1
            self._cond.notify_all()
        return req

    def generate(self, prompt_ids: Sequence[int], sampling: Sampling, lane: str | None = None) -> Result:
        """Blocking convenience: submit and wait for the result."""
        req = self.submit(prompt_ids, sampling, lane, deltas=False)
        for kind, value in req.events():
            if kind == "done":
                return value
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- the loop
    def _run(self) -> None:
        turn = 0
        while True:
            with self._cond:
                while not self._stopping and not self._waiting and not self.active:
                    self._cond.wait()
                if self._stopping:
                    break
            with self._step_lock:
                started = time.perf_counter()
                touched: list[Request] = []
                try:
                    self._admit()
                    lanes = [lane for lane in self._lanes.values() if lane.rows or lane.pending]
                    # a step takes joining prompts out of lane.pending before it samples their first token
                    touched = [req for lane in lanes for req in lane.rows + lane.pending]
                    if lanes:
                        lane = lanes[turn % len(lanes)]
                        turn += 1
                        if self._packed:
                            self._step(lane)
                        else:
                            self._decode(lane)
                except Exception as e:  # one failure must not kill the server: fail the rows it touched
                    log.exception("generation step failed")
                    for lane in list(self._lanes.values()):
                        touched += lane.rows + lane.pending
                        self._lanes.pop(lane.name, None)
                    for req in touched:  # every request the step held is answered (a no-op if it was)
                        req._finish("error", f"generation failed: {type(e).__name__}")
                self.stats["busy_s"] += time.perf_counter() - started
        for lane in self._lanes.values():
            for req in lane.rows + lane.pending:
                req._finish("cancelled")
        for req in self._waiting:
            req._finish("cancelled")

    def _admit(self) -> None:
        while True:
            with self._cond:
                if not self._waiting:
                    return
                batchable = self._batchable is not False
                room = self.max_batch if batchable else 1
                if self.active >= room:
                    return
                req = self._waiting.popleft()
            if req.cancelled:
                self.stats["cancelled"] += 1
                req._finish("cancelled")
                continue
            if self._packed:  # prefilled inside the lane's next step
                lane = self._lanes.get(req.lane)
                if lane is None:
                    lane = self._lanes[req.lane] = _Lane(req.lane)
                lane.pending.append(req)
                continue
            try:
                self._prefill(req)
            except Exception as e:
                log.exception("prefill failed")
                req._finish("error", f"generation failed: {type(e).__name__}")

    @torch.inference_mode()
    def _prefill(self, req: Request) -> None:
        ids = torch.as_tensor([req.prompt_ids], dtype=torch.long, device=self.device)
        reused, past = 0, None
        if self.prefix_cache is not None and self._batchable:
            reused, past = self.prefix_cache.lookup(req.lane, req.prompt_ids)
        extra: dict[str, Any] = {}
        if past is not None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
            for layer, (k, v) in zip(cache.layers, past, strict=False):
                layer.lazy_initialization(k, v)
                layer.keys, layer.values = k, v
            positions = torch.arange(reused, ids.shape[1], device=self.device)[None]
            extra = {self._cache_arg: cache, "position_ids": positions}
        with self.activate(req.lane):
            out = self.model(
                input_ids=ids[:, reused:],
                attention_mask=torch.ones_like(ids),
                use_cache=True,
                logits_to_keep=1,
                **extra,
            )
        cache = _cache_of(out)
        layers = getattr(cache, "layers", None)
        if self._batchable is None:
            from transformers.cache_utils import DynamicLayer

            self._batchable = bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
            if not self._batchable:
                log.warning(
                    "this model's KV cache is not a plain key/value list: serving one request at a time"
                )
        kv = [[layer.keys, layer.values] for layer in layers] if layers else None
        if self.prefix_cache is not None and self._batchable and kv is not None:
            self.prefix_cache.store(req.lane, req.prompt_ids, kv)
        token = self._sample(out.logits[:, -1, :], [req])[0]
        if self._take(req, token):
            return
        lane = self._lanes.get(req.lane)
        if lane is None:
            lane = self._lanes[req.lane] = _Lane(req.lane)
        if not self._batchable or kv is None:
            lane.rows.append(req)
            lane.cache = cache  # type: ignore[attr-defined]
            lane.next_tokens = torch.tensor([token])
            lane.positions = torch.tensor([len(req.prompt_ids)])
            lane.mask = torch.ones((1, len(req.prompt_ids)), dtype=torch.long)
            return
        self._join(lane, req, kv, token)

    def _join(self, lane: _Lane, req: Request, kv: list[list[torch.Tensor]], token: int) -> None:
        """Merge one prefilled row into the lane's batch, left-padding whichever side is shorter."""
        self._join_all(lane, [(req, kv, token)])

    def _join_all(self, lane: _Lane, new: list[tuple[Request, list[list[torch.Tensor]], int]]) -> None:
        """Merge prefilled rows into the lane's batch in one copy of its buffers, left-padding every row to
        the longest."""
        if not new:
            return
        lengths = [len(req.prompt_ids) for req, _, _ in new]
        width = max([lane.length, *lengths])
        capacity = max(lane.capacity, width + _HEADROOM)
        used = lane.length
        old = lane.layers if lane.rows else [[None, None] for _ in new[0][1]]
        lane.layers = [
            [
                _buffers(([ok[:, :, :used]] if ok is not None else []) + [kv[i][0] for _, kv, _ in new],
                         width, capacity),
                _buffers(([ov[:, :, :used]] if ov is not None else []) + [kv[i][1] for _, kv, _ in new],
                         width, capacity),
            ]
            for i, (ok, ov) in enumerate(old)
        ]  # fmt: skip
        masks = [_pad_left(lane.mask, width, 1)] if lane.rows else []
        masks += [_pad_left(torch.ones((1, n), dtype=torch.long), width, 1) for n in lengths]
        lane.mask = torch.cat(masks, dim=0)
        lane.rows.extend(req for req, _, _ in new)
        lane.positions = torch.cat([lane.positions, torch.tensor(lengths)])
        lane.next_tokens = torch.cat([lane.next_tokens, torch.tensor([t for _, _, t in new])])
        self.stats["max_rows"] = max(self.stats["max_rows"], len(lane.rows))

    @torch.inference_mode()
    def _decode(self, lane: _Lane) -> None:
        # drop rows whose client left before spending a forward on them
        gone = [i for i, r in enumerate(lane.rows) if r.cancelled]
        for i in gone:
            self.stats["cancelled"] += 1
            lane.rows[i]._finish("cancelled")
        if gone:
            self._keep(lane, [i for i in range(len(lane.rows)) if i not in gone])
            if not lane.rows:
                return
        batch = len(lane.rows)
        used = lane.length
        mask = torch.cat([lane.mask, torch.ones((batch, 1), dtype=torch.long)], dim=1)
        if self._batchable:
            from transformers import DynamicCache

            if used + 1 > lane.capacity:  # the buffers are full: grow them (amortised over _HEADROOM steps)
                lane.layers = [
                    [_buffers([k[:, :, :used]], used, used + _HEADROOM) for k in pair] for pair in lane.layers
                ]
            cache = DynamicCache(config=self.model.config)
            slot = self._slot or _slot_layer_class()
            self._slot = slot
            cache.layers = [slot(k, v, used) for k, v in lane.layers]
        else:
            cache = lane.cache  # type: ignore[attr-defined]
        with self.activate(lane.name):
            out = self.model(
                input_ids=lane.next_tokens[:, None].to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=lane.positions[:, None].to(self.device),
                **{self._cache_arg: cache},
                use_cache=True,
                logits_to_keep=1,
            )
        self.stats["steps"] += 1
        lane.mask = mask
        lane.positions = lane.positions + 1
        tokens = self._sample(out.logits[:, -1, :], lane.rows)
        keep = [
            i for i, (req, tok) in enumerate(zip(lane.rows, tokens, strict=True)) if not self._take(req, tok)
        ]
        lane.next_tokens = torch.tensor(tokens, dtype=torch.long)
        if len(keep) < batch:
            self._keep(lane, keep)

    def _keep(self, lane: _Lane, keep: list[int], drop_empty: bool = True) -> None:
        """Keep only rows ``keep``; drop the columns no remaining row attends to."""
        lane.rows = [lane.rows[i] for i in keep]
        if not keep:
            if drop_empty:
                self._lanes.pop(lane.name, None)
            lane.layers, lane.mask = [], torch.zeros((0, 0), dtype=torch.long)
            lane.positions = lane.next_tokens = torch.zeros(0, dtype=torch.long)
            return
        index = torch.tensor(keep, dtype=torch.long)
        used = lane.length
        lane.mask = lane.mask[index]
        lane.positions = lane.positions[index]
        lane.next_tokens = lane.next_tokens[index]
        # columns no remaining row attends to go: leading padding, and the draft tokens no row accepted
        live = (lane.mask.sum(dim=0) > 0).nonzero()[:, 0]
        lane.mask = lane.mask[:, live]
        if not self._batchable:
            return
        dev_index, dev_live = index.to(self.device), live.to(self.device)
        width = len(live)
        lane.layers = [
            [
                _buffers(
                    [t[:, :, :used].index_select(0, dev_index).index_select(2, dev_live)],
                    width,
                    width + _HEADROOM,
                )
                for t in pair
            ]
            for pair in lane.layers
        ]

    # ---------------------------------------------------------------- packed steps
    def _new_join(self, req: Request, reused: int, past: list[list[torch.Tensor]] | None) -> _Join:
        assert self._kv is not None
        heads, dim, dtype = self._kv
        n = len(req.prompt_ids)
        layers = []
        for i in range(len(past) if past is not None else self._num_layers()):
            pair = [torch.empty((1, heads, n, dim), dtype=dtype, device=self.device) for _ in range(2)]
            if past is not None:
                pair[0][:, :, :reused] = past[i][0]
                pair[1][:, :, :reused] = past[i][1]
            layers.append(pair)
        mask = None
        if reused:
            cols = torch.arange(n, device=self.device)
            rows = torch.arange(reused, n, device=self.device)
            mask = (cols[None, :] <= rows[:, None])[None, None]
        return _Join(req, layers, reused, n, mask)

    def _num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def _forward(
        self, lane: _Lane, joins: list[_Join], drafts: dict[int, list[int]] | None = None
    ) -> torch.Tensor:
        """One forward pass over the lane's decoding rows, their draft tokens and the joining prompts' new
        tokens, as one flat sequence. Returns the logits of every row's next token, then of every draft token
        (row by row), then of each joining prompt's last token. Appends the rows' new column to the mask
        (the draft columns are the caller's: only it knows which were accepted)."""
        drafts = drafts or {}
        rows = len(lane.rows)
        used = lane.length
        widest = max((len(d) for d in drafts.values()), default=0)
        mask = None
        plan_drafts = []
        if rows:
            if used + 1 + widest > lane.capacity:  # the buffers are full: grow them (amortised)
                cap = used + max(_HEADROOM, 1 + widest)
                lane.layers = [[_buffers([k[:, :, :used]], used, cap) for k in pair] for pair in lane.layers]
            lane.mask = torch.cat([lane.mask, torch.ones((rows, 1), dtype=torch.long)], dim=1)
            seen = lane.mask.bool().to(self.device)
            mask = seen[:, None, None, :]
            for k in sorted({len(d) for d in drafts.values()}):
                group = [row for row in _draft_order(drafts) if len(drafts[row]) == k]
                index = torch.tensor(group, device=self.device)
                causal = torch.ones((k, k), dtype=torch.bool, device=self.device).tril()
                past = seen[index][:, None].expand(-1, k, -1)
                group_mask = torch.cat([past, causal.expand(len(group), -1, -1)], dim=2)
                plan_drafts.append((index, k, group_mask[:, None]))
        order = _draft_order(drafts)
        ids = [lane.next_tokens] + [torch.tensor(drafts[row]) for row in order]
        ids += [torch.tensor(j.req.prompt_ids[j.m :]) for j in joins]
        positions = [lane.positions]
        positions += [torch.arange(1, len(drafts[row]) + 1) + lane.positions[row] for row in order]
        positions += [torch.arange(j.m, j.n) for j in joins]
        keep = list(range(rows + sum(len(d) for d in drafts.values())))
        at = len(keep)
        for j in joins:
            at += j.n - j.m
            keep.append(at - 1)
        plan = _Plan(lane, used, mask, plan_drafts, joins)
        with self.activate(lane.name):
            out = self.model(
                input_ids=torch.cat(ids)[None].to(self.device),
                position_ids=torch.cat(positions)[None].to(self.device),
                # a 4D mask is used as given: transformers builds none (the plan masks each part)
                attention_mask=torch.ones((1, 1, 1, 1), dtype=torch.bool, device=self.device),
                use_cache=False,
                logits_to_keep=torch.tensor(keep, device=self.device),
                instructkit_plan=plan,
            )
        return out.logits[0]

    def _drafts(self, lane: _Lane) -> dict[int, list[int]]:
        """Drafts for the greedy rows (a sampled row's tokens cannot be checked by argmax): from earlier
        requests' sequences when the row's tail matches one (longer, and mostly kept), else prompt lookup."""
        if self.draft_tokens <= 0 and self.suffix_drafts is None:
            return {}
        out = {}
        for i, req in enumerate(lane.rows):
            if req.sampling.temperature > 0 or req.cancelled:
                continue
            limit = req.sampling.max_tokens
            if self.context_length:
                limit = min(limit, self.context_length - len(req.prompt_ids))
            room = limit - len(req.generated) - 1  # tokens past the limit are wasted
            if room <= 0:
                continue
            context = req.prompt_ids + req.generated
            draft = []
            if self.suffix_drafts is not None:
                draft = self.suffix_drafts.lookup(req.lane, context, min(self.suffix_draft_tokens, room))
            if not draft and self.draft_tokens:
                draft = lookup_draft(context, min(self.draft_tokens, room))
            if draft:
                out[i] = draft
        return out

    @torch.inference_mode()
    def _step(self, lane: _Lane) -> None:
        """One packed step: decode every row of the lane (checking its draft tokens, if any) and prefill every
        admitted prompt, in one forward pass."""
        gone = [i for i, r in enumerate(lane.rows) if r.cancelled]
        for i in gone:
            self.stats["cancelled"] += 1
            lane.rows[i]._finish("cancelled")
        if gone:
            self._keep(lane, [i for i in range(len(lane.rows)) if i not in gone], drop_empty=False)
        joins = []
        for req in lane.pending:
            if req.cancelled:
                self.stats["cancelled"] += 1
                req._finish("cancelled")
                continue
            reused, past = 0, None
            if self.prefix_cache is not None:
                reused, past = self.prefix_cache.lookup(req.lane, req.prompt_ids)
            joins.append(self._new_join(req, reused, past))
        if not lane.rows and not joins:
            lane.pending = []
            self._lanes.pop(lane.name, None)
            return
        rows = len(lane.rows)
        drafts = self._drafts(lane)
        used = lane.length
        logits = self._forward(
            lane, joins, drafts
        )  # a failure here fails lane.rows and lane.pending (see _run)
        lane.pending = []
        self.stats["steps"] += 1
        self.stats["packed_prompts"] += len(joins) if rows else 0
        tokens = self._sample(logits[:rows], lane.rows)
        at = rows
        checked: dict[int, list[int]] = {}
        for row in _draft_order(drafts):
            k = len(drafts[row])
            checked[row] = logits[at : at + k].float().argmax(dim=-1).tolist()  # the token after each draft
            at += k
        widest = max((len(d) for d in drafts.values()), default=0)
        if widest:
            lane.mask = torch.cat([lane.mask, torch.zeros((rows, widest), dtype=torch.long)], dim=1)
        keep, last, accepted = [], [], []
        for i, req in enumerate(lane.rows):
            token = tokens[i]
            done = self._take(req, token)
            draft, n = drafts.get(i, []), 0
            while not done and n < len(draft) and draft[n] == token:  # the draft token is what greedy picks
                token = checked[i][n]
                n += 1
                done = self._take(req, token)
            if n:
                lane.mask[i, used + 1 : used + 1 + n] = 1
            self.stats["draft_tokens"] += len(draft)
            self.stats["accepted_tokens"] += n
            accepted.append(n)
            last.append(token)
            if not done:
                keep.append(i)
        lane.positions = lane.positions + 1 + torch.tensor(accepted, dtype=torch.long)
        lane.next_tokens = torch.tensor(last, dtype=torch.long)
        if len(keep) < rows:
            self._keep(lane, keep, drop_empty=False)
        new = []
        for j, token in zip(joins, self._sample(logits[at:], [j.req for j in joins]), strict=True):
            kv = [[k, v] for k, v in j.layers]
            if self.prefix_cache is not None:
                self.prefix_cache.store(j.req.lane, j.req.prompt_ids, kv)
            if not self._take(j.req, token):
                new.append((j.req, kv, token))
        self._join_all(lane, new)
        if not lane.rows and not lane.pending:
            self._lanes.pop(lane.name, None)

    # ---------------------------------------------------------------- per-row token handling
    def _sample(self, logits: torch.Tensor, rows: list[Request]) -> list[int]:
        logits = logits.float()
        if all(r.sampling.temperature <= 0 for r in rows):
            return logits.argmax(dim=-1).tolist()
        out = []
        for i, r in enumerate(rows):
            s = r.sampling
            if s.temperature <= 0:
                out.append(int(logits[i].argmax()))
                continue
            probs = torch.softmax(logits[i] / s.temperature, dim=-1).cpu()
            if not bool(probs.isfinite().all()):  # a temperature so small the logits overflow: its limit
                out.append(int(logits[i].argmax()))
                continue
            if s.top_p < 1.0:
                sorted_p, order = probs.sort(descending=True)
                keep = sorted_p.cumsum(0) - sorted_p < s.top_p  # the smallest set reaching top_p
                keep[0] = True
                probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
            out.append(int(torch.multinomial(probs, 1, generator=r.generator)))
        return out

    def _take(self, req: Request, token: int) -> bool:
        """Record one generated token; deliver the new text; True when the request is finished."""
        if req.cancelled:
            self.stats["cancelled"] += 1
            req._finish("cancelled")
            return True
        s = req.sampling
        req.generated.append(token)
        if token in req.eos:
            return self._done(req, "stop")
        text = self.tokenizer.decode(req.generated, skip_special_tokens=True)
        for stop in s.stop:
            at = text.find(stop, max(0, len(req.text) - len(stop)))
            if at >= 0:
                req.text = text[:at]
                return self._done(req, "stop")
        req.text = text
        limit = s.max_tokens
        if self.context_length:
            limit = min(limit, self.context_length - len(req.prompt_ids))
        if len(req.generated) >= limit:
            return self._done(req, "length")
        # Hold back an incomplete UTF-8 character and any tail that may still grow into a stop string.
        safe = len(text.rstrip("\ufffd"))
        for stop in s.stop:
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    safe = min(safe, len(text) - k)
                    break
        if safe > req.sent:
            req._push(("delta", text[req.sent : safe]))
            req.sent = safe
        return False

    def _done(self, req: Request, reason: str) -> bool:
        if len(req.text) > req.sent:  # what was held back (a partial stop string that never completed)
            req._push(("delta", req.text[req.sent :]))
            req.sent = len(req.text)
        self.stats["finished"] += 1
        if self.suffix_drafts is not None:
            self.suffix_drafts.add(req.lane, req.prompt_ids + req.generated)
        req._finish(reason)
        return True


def stream_text(
    engine: Engine, prompt_ids: Sequence[int], sampling: Sampling, lane: str | None = None
) -> Iterator[str]:
    """Text deltas of one reply, for a terminal (blocking); the request is cancelled if abandoned."""
    req = engine.submit(prompt_ids, sampling, lane)
    try:
        for kind, value in req.events():
            if kind == "delta":
                yield value
            elif value.finish_reason == "error":
                raise RuntimeError(value.error)
    finally:
        req.cancel()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (tests and shutdown)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
