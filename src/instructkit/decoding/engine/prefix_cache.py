"""Automatic prefix caching: a prompt that starts like a recent one prefills only the part after the shared
prefix (:class:`PrefixCache`, which says why that is exact and what it saves).

The runner looks a joining prompt up before prefilling it and stores every prompt it prefilled, per adapter
lane. Entries are the prompt's key/value tensors themselves (no copy), bounded in bytes; the bundled model
keeps about 46 KB per prompt token (fp32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


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

    def longest(self, lane: str | None, ids: Sequence[int]) -> tuple[int, tuple | None]:
        """The length of the longest stored prefix of ``ids`` (at most ``len(ids) - 1`` tokens) and its
        entry's key, without counting a lookup."""
        best, best_key = 0, None
        limit = len(ids) - 1
        for key in self._entries:
            if key[0] != lane:
                continue
            m = common_prefix(key[1], ids, limit)
            if m > best:
                best, best_key = m, key
        return best, best_key

    def lookup(self, lane: str | None, ids: Sequence[int]) -> tuple[int, list[list[torch.Tensor]] | None]:
        """``(m, kv)``: the longest stored prefix of ``ids`` (at most ``len(ids) - 1`` tokens, so the last
        token is always computed and gives the next token's logits), or ``(0, None)``."""
        self.stats["lookups"] += 1
        self.stats["prompt_tokens"] += len(ids)
        best, best_key = self.longest(lane, ids)
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


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int | None = None) -> int:
    """How many tokens ``a`` and ``b`` share from the start (at most ``limit``)."""
    n = min(len(a), len(b)) if limit is None else min(len(a), len(b), limit)
    m = 0
    while m < n and a[m] == b[m]:
        m += 1
    return m
