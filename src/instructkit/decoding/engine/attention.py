"""Packed steps: one forward pass decodes a lane's rows, checks their drafts and prefills joining prompts.

A forward pass reads every weight once, and on a CPU that is most of its cost (about 55 of the ~100 ms an
8-row step of the bundled model takes on one thread), so a prompt that rides along in a decoding step
costs only its tokens' share instead of a pass of its own. The step's tokens are one flat sequence, and
the attention of each part is the ``sdpa`` call a separate pass would make (:class:`Plan`): running rows
attend to their lane's key/value buffers, left-padded to a common length with a per-row mask and written
one column per step in place; draft tokens attend to their row and, causally, to each other; a joining
prompt attends causally to its own buffer (:class:`Join`) and then joins the lane's.

The plan is plugged in through transformers' attention interface (:func:`register_packed_attention`),
the way transformers' own continuous batching plugs paged attention in, so the model code is untouched.
A model whose attention does not go through that interface as ``sdpa`` is not packed: the runner
prefills each of its prompts in a pass of its own, and checks on a probe that a packed pass gives the
plain forward's logits before it packs anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from instructkit.decoding.engine.kv_buffers import Lane
    from instructkit.decoding.engine.requests import Request

PACKED = "instructkit_packed"  # the attention implementation name registered with transformers
_registered = False


def register_packed_attention() -> None:
    """Register the packed attention with transformers' attention interface (once per process).

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

    AttentionInterface.register(PACKED, _packed_attention)
    AttentionMaskInterface.register(PACKED, sdpa_mask)
    _registered = True


def additive(seen: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean attention mask as the additive one ``sdpa`` makes of it (0 where seen, -inf elsewhere), once
    per step rather than inside every layer's call."""
    return torch.zeros(seen.shape, dtype=dtype, device=seen.device).masked_fill_(~seen, float("-inf"))


@dataclass
class Join:
    """A request prefilled inside a step: its prompt's key/value buffers ``[1, kv heads, n, dim]`` per layer,
    the first ``m`` columns taken from the prefix cache, columns ``m..n`` written by the step."""

    req: Request
    layers: list[list[torch.Tensor]]
    m: int
    n: int
    mask: torch.Tensor | None  # [1, 1, n - m, n] additive causal mask offset by m (None when m == 0)

    @classmethod
    def create(
        cls,
        req: Request,
        reused: int,
        past: list[list[torch.Tensor]] | None,
        num_layers: int,
        kv: tuple[int, int, torch.dtype],
        device: torch.device,
    ) -> Join:
        """Buffers for ``req``'s prompt (``kv``: key/value heads, head dim, dtype), the first ``reused``
        columns copied from ``past`` (the prefix cache's states, one pair per layer)."""
        heads, dim, dtype = kv
        n = len(req.prompt_ids)
        layers = []
        for i in range(num_layers):
            pair = [torch.empty((1, heads, n, dim), dtype=dtype, device=device) for _ in range(2)]
            if past is not None:
                pair[0][:, :, :reused] = past[i][0]
                pair[1][:, :, :reused] = past[i][1]
            layers.append(pair)
        mask = None
        if reused:
            cols = torch.arange(n, device=device)
            rows = torch.arange(reused, n, device=device)
            mask = additive((cols[None, :] <= rows[:, None])[None, None], dtype)
        return cls(req, layers, reused, n, mask)


# transformers' sdpa arguments that change what it computes: a call with any of them goes through its sdpa
_SDPA_EXTRAS = ("softcap", "position_bias", "output_attentions", "is_causal")


class Plan:
    """What one packed step's attention needs. The step's tokens are one flat sequence: first every decoding
    row's next token (attending to its lane buffer row: one batched ``sdpa``, exactly the separate decoding
    pass), then each drafting row's draft tokens (attending to its row and, causally, to each other), then
    each joining prompt's new tokens (attending causally to their own buffers, as a separate prefill would).

    The decoding rows, the drafts and the prompts joining after a cached prefix call ``torch``'s ``sdpa``
    directly, with masks made additive once per step (``mask``: ``[rows, 1, 1, columns]``; each draft
    group's ``[rows, 1, k, columns]``; a join's, once), each layer the same numbers as transformers' ``sdpa``
    (which turns a boolean mask into this one inside every call).
    Draft tokens attend with ``enable_gqa`` to the key/value heads as they are, and a group of consecutive
    rows (``index`` a slice: every row drafting alike) reads its rows of the lane buffers as a view: the
    copy of each drafting row's whole key/value history per layer (``index_select``), then again three
    times over (transformers repeats the key/value heads per query head for a multi-token query), was
    most of an 8-row drafting step's attention: 1.56 ms -> 0.43 ms a layer at 8 rows x 2 drafts x 500
    columns (one thread, same numbers to the bit); a 270-token prompt after a 30-token cached prefix, 2.95
    -> 2.68 ms a layer."""

    def __init__(
        self,
        lane: Lane,
        used: int,
        mask: torch.Tensor | None,
        drafts: list[tuple[torch.Tensor | slice, int, torch.Tensor]],
        joins: list[Join],
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
        plain = not any(kwargs.get(name) for name in _SDPA_EXTRAS)  # else transformers' sdpa decides
        if r:
            kb, vb = self.lane.layers[layer]
            kb[:, :, used] = key[0, :, :r].transpose(0, 1)
            vb[:, :, used] = value[0, :, :r].transpose(0, 1)
            q = query[0, :, :r].transpose(0, 1).unsqueeze(2)  # [rows, heads, 1, dim], as a batched decode
            keys, values = kb[:, :, : used + 1], vb[:, :, : used + 1]
            if plain:
                out = _sdpa(module, q, keys, values, self.mask, kwargs)
            else:
                out, _ = sdpa(module, q, keys, values, self.mask, **kwargs)
            parts.append(out.reshape(1, r, *out.shape[2:]))
        at = r
        for index, k, mask in self.drafts:  # rows drafting k tokens each, one sdpa call for all of them
            n, end = _count(index), used + 1 + k
            heads, dim = key.shape[1], key.shape[3]
            kb[index, :, used + 1 : end] = key[0, :, at : at + n * k].view(heads, n, k, dim).transpose(0, 1)
            vb[index, :, used + 1 : end] = value[0, :, at : at + n * k].view(heads, n, k, dim).transpose(0, 1)
            q = query[0, :, at : at + n * k].view(query.shape[1], n, k, dim).transpose(0, 1)
            if isinstance(index, slice):  # consecutive rows: a view of the buffers, no copy
                keys, values = kb[index, :, :end], vb[index, :, :end]
            else:
                keys, values = kb[:, :, :end].index_select(0, index), vb[:, :, :end].index_select(0, index)
            if plain:
                out = _sdpa(module, q, keys, values, mask, kwargs)  # [n, k, heads, dim]
            else:
                out, _ = sdpa(module, q, keys, values, mask, **kwargs)
            parts.append(out.reshape(1, n * k, *out.shape[2:]))
            at += n * k
        for j in self.joins:
            s = j.n - j.m
            kj, vj = j.layers[layer]
            kj[:, :, j.m :] = key[:, :, at : at + s]
            vj[:, :, j.m :] = value[:, :, at : at + s]
            q = query[:, :, at : at + s]
            if plain and j.mask is not None:  # after a cached prefix: the key/value heads as they are, too
                out = _sdpa(module, q, kj, vj, j.mask, kwargs)
            else:
                out, _ = sdpa(module, q, kj, vj, j.mask, **kwargs)
            parts.append(out)
            at += s
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _count(index: torch.Tensor | slice) -> int:
    return index.stop - index.start if isinstance(index, slice) else len(index)


def _sdpa(
    module: Any,
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    kwargs: dict[str, Any],
) -> torch.Tensor:
    """torch's ``sdpa`` of ``q`` ``[rows, heads, tokens, dim]`` over the key/value heads as they are, as
    ``[rows, tokens, heads, dim]``, with transformers' ``sdpa``'s numbers to the bit: one query token per row
    goes as each key/value head's query heads in a row (as there; ``enable_gqa`` differs in the last bits),
    more tokens with ``enable_gqa`` (where transformers copies each key/value head once per query head)."""
    groups = getattr(module, "num_key_value_groups", 1)
    rows, heads, tokens, dim = q.shape
    sdpa = torch.nn.functional.scaled_dot_product_attention
    args = {"attn_mask": mask, "dropout_p": kwargs.get("dropout", 0.0), "scale": kwargs.get("scaling")}
    if tokens == 1 and groups > 1:
        out = sdpa(q.reshape(rows, heads // groups, groups, dim), keys, values, **args)
        return out.reshape(rows, heads, 1, dim).transpose(1, 2)
    return sdpa(q, keys, values, enable_gqa=groups > 1, **args).transpose(1, 2)
