"""Token losses exactly as training computes them, shared by training and evaluation: one right-padded
sample per row (``UnpackedCollator``), and the per-token losses of each sample's span of a batch, padded or
packed (``span_token_losses``, HF's shift: logits at ``t`` predict ``labels[t + 1]``). Evaluation's loss and
perplexity use these, so eval counts and masks tokens as training does; packing (``train/packing.py``)
builds its rows on the same ``Span``.
"""

from __future__ import annotations

from typing import Any

import torch

from instructkit.templates import IGNORE_INDEX

Span = tuple[int, int, int]  # (row, start, end): a sample occupies batch[row, start:end]


class UnpackedCollator:
    """The plain baseline: one sample per row, right-padded, 2D ``attention_mask``, labels padded with -100."""

    def __init__(self, pad_token_id: int, max_length: int | None = None):
        self.pad = pad_token_id
        self.max_length = max_length

    def _len(self, s: dict[str, Any]) -> int:
        n = len(s["input_ids"])
        return n if self.max_length is None else min(n, self.max_length)

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max([self._len(s) for s in samples] + [1])
        ids = torch.full((len(samples), width), self.pad, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(samples), width), dtype=torch.long)
        for i, s in enumerate(samples):
            n = self._len(s)
            ids[i, :n] = torch.as_tensor(s["input_ids"][:n], dtype=torch.long)
            labels[i, :n] = torch.as_tensor(s["labels"][:n], dtype=torch.long)
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    def spans(self, samples: list[dict[str, Any]]) -> list[Span]:
        return [(i, 0, self._len(s)) for i, s in enumerate(samples) if self._len(s) > 0]


def span_token_losses(logits: torch.Tensor, labels: torch.Tensor, spans: list[Span]) -> list[torch.Tensor]:
    """Per-token losses (differentiable) of each span: logits at ``t`` predict ``labels[t + 1]`` inside the
    span, positions labelled -100 skipped. The span's first label is never a target, as in HF's shift."""
    out = []
    for row, start, end in spans:
        target = labels[row, start + 1 : end]
        keep = target != IGNORE_INDEX
        pred = logits[row, start : end - 1].float()
        out.append(torch.nn.functional.cross_entropy(pred[keep], target[keep], reduction="none"))
    return out


@torch.no_grad()
def per_sample_loss(model: Any, batch: dict[str, torch.Tensor], sample_spans: list[Span]) -> list[float]:
    """Mean token loss of each sample (``nan`` for a sample with no trained token).

    ``sample_spans`` are ``(row, start, end)`` triples, e.g. from ``PackedCollator.spans`` or
    ``UnpackedCollator.spans``. The model runs on the batch without ``labels``; its mode is left as it is.
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits
    return [
        t.mean().item() if t.numel() else float("nan")
        for t in span_token_losses(logits, batch["labels"], sample_spans)
    ]
