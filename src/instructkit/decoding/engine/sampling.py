"""How a request is decoded (:class:`Sampling`) and the choice of each row's next token (:func:`sample`).

Sampling is per request, not per batch: temperature 0 is greedy, ``top_p`` keeps the smallest set of
tokens whose probability reaches it, and every sampled request draws from a ``torch.Generator`` of its own
(seeded when the request gives a seed), so a seeded reply does not depend on what else is in the batch. A
batch of greedy rows takes one ``argmax`` over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from instructkit.decoding.engine.requests import Request


@dataclass
class Sampling:
    """How one request is decoded. ``temperature`` 0 is greedy (``top_p`` and ``seed`` then unused)."""

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


def sample(logits: torch.Tensor, rows: list[Request]) -> list[int]:
    """The next token of each row, from its logits (one row of ``logits`` per request) and its sampling."""
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
