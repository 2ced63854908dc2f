"""Draft proposers: tokens a greedy row is likely to produce next, checked inside the next step.

A step computes the logits after each draft token too and keeps the drafts greedy decoding picks, so a
reply is the same with or without them, in fewer steps. Only greedy rows draft: a sampled row's tokens
cannot be checked by ``argmax``. Two proposers, tried in this order for each row (:func:`propose_drafts`):

* :class:`SuffixDrafts` (suffix speculation, vLLM's ``suffix`` method): the prompts and replies of
  requests that finished earlier. A question asked again gets its earlier greedy reply as drafts, up to 16
  tokens a step. On the load benchmark (128 requests over 40 questions, 8 clients, one thread) that cut the
  steps from 610 to 339 and took requests/s from 1.47 to 2.13 in-process, replies identical.
* :func:`lookup_draft` (prompt lookup, vLLM's ``ngram`` method): the tokens that followed the last few
  tokens' earlier occurrence in the row's own prompt or reply; 2 draft tokens from 2-3-grams give 1.28
  tokens per row per step on the load benchmark's replies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from instructkit.decoding.engine.requests import Request


def draft_order(drafts: dict[int, list[int]]) -> list[int]:
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


LOOKUP_DRAFT_ROWS = 4
"""Prompt-lookup drafts for every greedy row while a step decodes at most this many rows; past that, only for
a row whose drafts have mostly been kept (:data:`KEEP_RATE`). A step reads every weight whatever its token
count, so while it holds few tokens a draft token costs about 1 ms and a kept one saves a step's share
(about 55 ms over the rows); past about 8 tokens each one costs about 3 ms (fp32 SmolLM2-135M, packed
linears, one thread: 8 rows 61 ms, 32 tokens 136 ms). Measured on distinct prompts, with every row drafting:
break-even at 8 rows, and 48 eval prompts 24.8 s with drafts vs 19.5 s without at 16 rows. Drafts from
earlier replies are proposed at any batch size: where they match 8 tokens they are mostly kept."""

KEEP_RATE = 0.6
"""In a step of more than :data:`LOOKUP_DRAFT_ROWS` rows, a row gets prompt-lookup drafts while at least this
share of its drafts were kept (a list, code, a reply quoting its prompt), after :data:`PROBE_DRAFTS` draft
tokens that every row gets to show its rate."""

PROBE_DRAFTS = 4

FREE_STEP_TOKENS = 8
"""Prompt-lookup drafts fill a step up to about this many tokens when few rows decode: a step's cost hardly
grows while it holds few tokens (its weights are read once either way), so a lone row's drafts are nearly
free. Measured on the bundled model (fp32, packed linears, 2 threads, 300-token prompts): 1 row 47 ms with 0
draft tokens, 46 ms with 4, 51 ms with 8, 62 ms with 16; 2 rows 53, 47, 52, 68 ms with 0, 2, 4, 8 each; 4
rows 47 ms with none, 61 ms with 2 each. Rows decoding alone are the tails of a batch that its caller waits
for (a generation round's last replies), and prompt lookup kept 67% of its draft tokens at 4 rows or fewer
on the local Self-Instruct benchmark. 0: every row drafts ``draft_tokens``."""

ADAPTIVE_SUFFIX = True
"""Drafts from earlier replies start at ``suffix_draft_tokens``; after one that is not kept whole the row's
next is at most one more than it kept, and a draft kept whole doubles the row's limit again (up to
``suffix_draft_tokens``). Their kept counts are bimodal: on the local Self-Instruct benchmark 16-token
drafts kept 0, 1 or 2 tokens in 59% of cases (a few-shot example's phrasing matched 8 tokens, then the
reply went its own way) and 8 or more in 23% (a reply copying an example), while past 8 rows each draft
token costs about 3 ms of the step. False: every draft is as long as its match allows."""


def _worth_drafting(req: Request, rows: int) -> bool:
    if rows <= LOOKUP_DRAFT_ROWS or req.drafted < PROBE_DRAFTS:
        return True
    return (req.kept + 1) / (req.drafted + 2) >= KEEP_RATE


def after_check(req: Request, drafted: int, kept: int, most: int) -> None:
    """Set the row's limit for drafts from earlier replies after ``kept`` of its ``drafted`` were kept
    (:data:`ADAPTIVE_SUFFIX`; ``most``: the engine's ``suffix_draft_tokens``)."""
    if drafted and not req.looked_up:
        req.suffix_cap = min(most, 2 * drafted) if kept == drafted else max(2, kept + 1)


def propose_drafts(
    rows: list[Request],
    *,
    draft_tokens: int,
    suffix_drafts: SuffixDrafts | None,
    suffix_draft_tokens: int,
    context_length: int | None,
) -> dict[int, list[int]]:
    """Drafts for the greedy rows (a sampled row's tokens cannot be checked by argmax), by row index: from
    earlier requests' sequences when the row's tail matches one (longer, and mostly kept), else prompt
    lookup while the step holds at most :data:`LOOKUP_DRAFT_ROWS` rows or the row's drafts are mostly kept
    (:func:`_worth_drafting`). No row drafts past its token limit (those tokens would be wasted)."""
    if draft_tokens <= 0 and suffix_drafts is None:
        return {}
    out = {}
    lookup = draft_tokens
    if draft_tokens and FREE_STEP_TOKENS:
        lookup = max(draft_tokens, FREE_STEP_TOKENS // max(len(rows), 1) - 1)
    for i, req in enumerate(rows):
        if req.sampling.temperature > 0 or req.cancelled:
            continue
        room = req.token_limit(context_length) - len(req.generated) - 1  # tokens past the limit are wasted
        if room <= 0:
            continue
        context = req.prompt_ids + req.generated
        draft = []
        req.looked_up = False
        if suffix_drafts is not None:
            cap = suffix_draft_tokens if req.suffix_cap is None or not ADAPTIVE_SUFFIX else req.suffix_cap
            draft = suffix_drafts.lookup(req.lane, context, min(cap, room))
        if not draft and draft_tokens and _worth_drafting(req, len(rows)):
            draft = lookup_draft(context, min(lookup, room))
            req.drafted += len(draft)
            req.looked_up = True
        if draft:
            out[i] = draft
    return out
