"""Mean token loss and perplexity of a causal LM over the tokens a sample trains (labels != -100).

The loss is token-weighted: total NLL of all trained tokens / their number, which is what training
minimises and what ``exp`` turns into a perplexity. A mean of per-sample means would weigh a one-token
answer like a 500-token one. Batches are right-padded by the training collator and token losses come from
``instructkit.token_loss.span_token_losses`` (HF's shift: logits at ``t`` predict ``labels[t + 1]``), so eval
counts and masks tokens exactly as training does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from instructkit.evaluate.metrics import register
from instructkit.templates import IGNORE_INDEX


def _trained_tokens(sample: dict[str, Sequence[int]], i: int) -> int:
    ids, labels = sample["input_ids"], sample["labels"]
    if len(ids) != len(labels):
        raise ValueError(f"sample {i}: {len(ids)} input_ids but {len(labels)} labels")
    return sum(1 for x in list(labels)[1:] if x != IGNORE_INDEX)  # the first label is never a target


def perplexity(
    model: Any, samples: Sequence[dict[str, Sequence[int]]], batch_size: int = 8
) -> dict[str, Any]:
    """``{"loss": mean NLL per trained token, "perplexity": exp(loss), "tokens": trained-token count}``.

    ``samples``: ``{"input_ids": [...], "labels": [...]}`` each, labels -100 where not trained. The model
    runs on its own device in eval mode under ``inference_mode``; its train/eval mode is restored after.
    """
    import torch  # here, not at the top: listing the metrics imports this module and must stay light

    from instructkit.token_loss import UnpackedCollator, span_token_losses

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    counts = [_trained_tokens(s, i) for i, s in enumerate(samples)]
    if sum(counts) == 0:
        raise ValueError("perplexity: no trained tokens (every label is -100, or no samples)")
    # Samples with nothing to score are skipped; longest first so a batch holds similar lengths.
    todo = sorted((s for s, c in zip(samples, counts, strict=True) if c), key=lambda s: -len(s["input_ids"]))
    # Any pad id works: padding is right of every real token, masked, and labelled -100.
    pad = getattr(model.config, "pad_token_id", None)
    collate = UnpackedCollator(pad_token_id=pad if pad is not None else 0)
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                batch = collate(chunk)
                logits = model(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                    use_cache=False,
                ).logits
                for t in span_token_losses(logits, batch["labels"].to(device), collate.spans(chunk)):
                    total += t.double().sum().item()  # accumulate in float64: many batches, one sum
                    tokens += t.numel()
    finally:
        model.train(was_training)
    loss = total / tokens
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf, "tokens": tokens}


@register("perplexity", "loss", higher_is_better=False)
def compute(
    predictions: Sequence[dict[str, Sequence[int]]],
    references: Sequence[Any] | None = None,
    *,
    model: Any,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Registry form of ``perplexity``: ``predictions`` are the tokenized samples, whose labels are the
    targets; ``references`` must be empty or ``None``."""
    if references:
        raise ValueError("perplexity scores each sample against its own labels; pass references=None")
    return perplexity(model, predictions, batch_size)
