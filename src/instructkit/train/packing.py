"""Sequence packing for causal-LM fine-tuning: several samples per row, each isolated from the others.

``pack_samples`` groups sample indices into bins of at most ``max_length`` tokens (greedy first-fit
decreasing); ``PackedCollator`` turns a batch of bins into rows where every sample sees only itself.

How the isolation is done, and the transformers (5.x, checked on 5.24) convention it relies on:

* ``attention_mask`` is a **4D additive float mask** of shape ``(B, 1, L, L)``: ``0.0`` where query ``i``
  may attend key ``j`` (same sample and ``j <= i``), ``torch.finfo(dtype).min`` elsewhere. transformers'
  ``masking_utils.create_causal_mask`` returns any 4D ``attention_mask`` as-is (``_preprocess_mask_arguments``
  exits early on ``len(attention_mask.shape) == 4``): no causal mask is added on top, no inversion is done.
  The mask then reaches the attention function unchanged, which is why it must already be additive:

  - ``eager`` (``modeling_llama.eager_attention_forward``) does ``scores + attention_mask``, so a bool or
    0/1 mask would be silently wrong there; only an additive float mask works.
  - ``sdpa`` (``integrations/sdpa_attention.py``) passes it to ``F.scaled_dot_product_attention`` as
    ``attn_mask`` with ``is_causal=False``; a float ``attn_mask`` is added to the scores (same meaning as
    eager) and must have the query's dtype, hence the collator's ``dtype`` argument: pass the model's
    compute dtype (``torch.bfloat16`` for a bf16 model).
  - ``flash_attention_*`` kernels take no dense mask; this collator is for ``sdpa`` and ``eager``.

  Because the mask is already causal and block-diagonal, the causal structure is entirely ours: a padding
  position attends only to itself (a row with no allowed key is NaN with a bool or ``-inf`` mask) and no real token
  attends to padding.
* ``position_ids`` restart at 0 for every sample, so RoPE sees each sample as if it were alone.
  Position ids alone do NOT isolate samples when a 2D mask is also passed (the mask is built as one long
  causal sequence). transformers 5.24 does infer packing from restarting ``position_ids`` when
  ``attention_mask`` is ``None`` -- but only with no cache: with ``use_cache=True`` (the Llama config
  default, even in train mode) the model builds a ``DynamicCache`` and the detection is skipped, so samples
  leak. The explicit 4D mask is returned before any of that and does not depend on it.
* ``labels``: the first label of every sample is ``-100``. HF causal LMs shift inside the loss (logits at
  ``t`` predict ``labels[t + 1]``), so without this the first token of a sample would be trained as the
  continuation of the previous sample's last token. Unpacked, a sample's first label is never a target
  either, so packed and unpacked train exactly the same tokens.

With these three, packed logits, per-sample losses and gradients equal the unpacked ones to float rounding
(``tests/test_packing.py``). The unpacked baseline (``UnpackedCollator``) and the per-token losses of either
layout live in ``instructkit/token_loss.py``, which evaluation shares.
"""

from __future__ import annotations

from typing import Any

import torch

from instructkit.templates import IGNORE_INDEX
from instructkit.token_loss import Span


def pack_samples(samples: list[dict[str, Any]], max_length: int) -> list[list[int]]:
    """Greedy first-fit-decreasing bin packing of sample indices; each bin's total length <= max_length.

    Samples are taken longest first (ties by index) and put in the first open bin with room, else a new
    bin. A sample longer than ``max_length`` gets a bin of its own (the collator truncates it). Every index
    appears exactly once; the result depends only on the lengths, so it is deterministic.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    lengths = [len(s["input_ids"]) for s in samples]
    order = sorted(range(len(samples)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    # free tokens per bin; an oversize bin has -1 so nothing joins it, not even an empty sample
    room: list[int] = []
    for i in order:
        n = lengths[i]
        if n > max_length:
            bins.append([i])
            room.append(-1)
            continue
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_length - n)
    return bins


def _layout(bins: list[list[dict[str, Any]]], max_length: int) -> list[tuple[Span, dict[str, Any]]]:
    """Each sample's span in its bin's row, in bin order; a row is cut at ``max_length`` and a sample left
    with no token there (empty, or cut off entirely) gets no span."""
    out = []
    for row, samples in enumerate(bins):
        pos = 0
        for s in samples:
            end = min(pos + len(s["input_ids"]), max_length)
            if end > pos:
                out.append(((row, pos, end), s))
            pos = end
    return out


def packed_spans(bins: list[list[dict[str, Any]]], max_length: int) -> list[Span]:
    """Where each sample of each bin lands in ``PackedCollator(..., max_length)(bins)``, in bin order.

    A sample cut by the row's ``max_length`` gets its truncated span; one with no token left is left out.
    """
    return [span for span, _ in _layout(bins, max_length)]


def _block_causal_mask(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) segment ids (unique per sample; unique per padding position) -> (B, 1, L, L) additive mask."""
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril_()
    allowed = (segments[:, :, None] == segments[:, None, :]) & causal
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


class PackedCollator:
    """Each batch element is one bin (a list of samples) concatenated into one row.

    Returns ``input_ids`` and ``labels`` (B, L), ``position_ids`` (B, L) restarting at 0 per sample, and a
    4D additive ``attention_mask`` (B, 1, L, L) in ``dtype`` (the model's compute dtype). L is the longest
    row in the batch (rows are right-padded); a row is cut at ``max_length``.
    """

    def __init__(self, pad_token_id: int, max_length: int, dtype: torch.dtype = torch.float32):
        if not dtype.is_floating_point:
            raise ValueError(f"the additive mask needs a float dtype, got {dtype}")
        self.pad = pad_token_id
        self.max_length = max_length
        self.dtype = dtype

    def __call__(self, bins: list[list[dict[str, Any]]]) -> dict[str, torch.Tensor]:
        layout = _layout(bins, self.max_length)
        width = max((end for (_, _, end), _ in layout), default=1)
        rows = len(bins)
        ids = torch.full((rows, width), self.pad, dtype=torch.long)
        labels = torch.full((rows, width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((rows, width), dtype=torch.long)
        # padding positions get their own (negative, unique) segment so they attend only to themselves
        segments = -1 - torch.arange(width).expand(rows, width).clone()
        for k, ((row, start, end), s) in enumerate(layout):
            n = end - start
            ids[row, start:end] = torch.as_tensor(s["input_ids"][:n], dtype=torch.long)
            labels[row, start:end] = torch.as_tensor(s["labels"][:n], dtype=torch.long)
            labels[row, start] = IGNORE_INDEX  # never predicted from the previous sample's last token
            positions[row, start:end] = torch.arange(n)
            segments[row, start:end] = k
        return {
            "input_ids": ids,
            "labels": labels,
            "position_ids": positions,
            "attention_mask": _block_causal_mask(segments, self.dtype),
        }

    def spans(self, bins: list[list[dict[str, Any]]]) -> list[Span]:
        return packed_spans(bins, self.max_length)
