"""The packed step's forward pass for Llama models, written out: the same operations as transformers' Llama
code, in the same order, without its per-call work.

Why: a decoding step of the bundled model runs 30 layers of a dozen module calls each, and every call pays for
``nn.Module.__call__``, transformers' decorators and keyword plumbing, a lookup of the attention function, and
rotary embedding applied to queries and keys apart. On the bundled model (fp32, packed linears, 2 threads) that
was about 5 ms of every step, whatever its rows: measured on the same plans, 1 row 43.0 -> 38.0 ms, 4 rows
44.6 -> 39.4 ms, 8 rows 53.1 -> 48.7 ms, 16 rows 68.9 -> 63.5 ms, logits equal to the bit. Here the q/k/v and
gate/up products are each one packed product (:data:`~instructkit.decoding.engine.packed.FUSED`) read without
the siblings' bookkeeping, and the rotation of queries and keys is one set of element-wise operations over both
(each element gets the same operations as in transformers, so the same numbers). Written by hand because
``torch.compile`` needs a C++ compiler and minutes of warm-up, which a user's laptop may lack.

It runs only where it is the same computation: on ``llama`` models, and the runner checks at start that it
gives the model's own forward's logits to the bit on a probe (:meth:`~instructkit.decoding.engine.runner.
ModelRunner._probe`), and keeps that forward if not. Projections that are not one packed group (not packed,
or wrapped by an adapter, which then works as in the model's own forward) are called as modules: a served
LoRA adapter on q/v gets the rest of the saving. Forward hooks on the decoder layers, the attention and MLP
modules, and on packed q/k/v and gate/up projections are not run.
"""

from __future__ import annotations

from typing import Any

import torch


def supported(model: Any) -> str | None:
    """Why :func:`forward` cannot run ``model`` (a causal LM, adapters' wrapper removed); None: it can."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "llama":
        return f"the model is {getattr(config, 'model_type', type(model).__name__)!r}, not 'llama'"
    inner = getattr(model, "model", None)
    layers = list(getattr(inner, "layers", []) or [])[: config.num_hidden_layers]
    if not layers or not hasattr(model, "lm_head") or len(layers) != config.num_hidden_layers:
        return "the model has no decoder layers or no output layer where a Llama has them"
    parts = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
             "mlp.up_proj", "mlp.down_proj", "mlp.act_fn", "input_layernorm", "post_attention_layernorm")  # fmt: skip
    for layer in layers:
        for part in parts:
            try:
                layer.get_submodule(part)
            except AttributeError:
                return f"a layer has no {part}"
    return None


def _group(members: list[Any]) -> Any:
    """The packed group of ``members`` when they are exactly one (:data:`~instructkit.decoding.engine.packed.
    FUSED`), else None (not packed, or an adapter wraps one of them: each is then called as a module)."""
    group = getattr(members[0], "_instructkit_group", None)
    return group if group is not None and group.layers == members else None


def _rms(norm: Any, h: torch.Tensor) -> torch.Tensor:
    # transformers' LlamaRMSNorm (in fp32 its casts are no-ops)
    dtype = h.dtype
    h = h.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    return norm.weight * (h * torch.rsqrt(variance + norm.variance_epsilon)).to(dtype)


def _product(group: Any, x: torch.Tensor) -> torch.Tensor:
    weight, bias = group.weights()  # packed again if a member's weight changed
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # transformers' apply_rotary_pos_emb on [1, tokens, heads, dim] (cos, sin: [1, tokens, 1, dim])
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def forward(
    model: Any, input_ids: torch.Tensor, position_ids: torch.Tensor, keep: torch.Tensor, plan: Any
) -> torch.Tensor:
    """The logits at positions ``keep`` of the flat sequence ``input_ids`` ``[1, tokens]``, the attention of
    every layer going through ``plan`` (:class:`~instructkit.decoding.engine.attention.Plan`): what the
    model's own forward returns with ``logits_to_keep=keep`` and the plan, as ``[kept, vocab]``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    inner = model.model
    h = inner.embed_tokens(input_ids)
    cos, sin = inner.rotary_emb(h, position_ids)
    # [1, tokens, 1, dim]: over the heads of [1, tokens, heads, dim]
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    tokens = input_ids.shape[1]
    for layer in inner.layers[: model.config.num_hidden_layers]:
        attn, mlp = layer.self_attn, layer.mlp
        dim = attn.head_dim
        x = _rms(layer.input_layernorm, h)
        qkv = _group([attn.q_proj, attn.k_proj, attn.v_proj])
        if qkv is not None:  # one packed product; queries and keys rotated together
            nq, nk = attn.q_proj.out_features // dim, attn.k_proj.out_features // dim
            out = _product(qkv, x)
            qk = _rotate(out[..., : (nq + nk) * dim].view(1, tokens, nq + nk, dim), cos, sin)
            q, k = qk[:, :, :nq], qk[:, :, nq:]
            v = out[..., (nq + nk) * dim :].view(1, tokens, nk, dim)
        else:  # each projection as a module (an adapter's, too)
            q = _rotate(attn.q_proj(x).view(1, tokens, -1, dim), cos, sin)
            k = _rotate(attn.k_proj(x).view(1, tokens, -1, dim), cos, sin)
            v = attn.v_proj(x).view(1, tokens, -1, dim)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        out = plan.attend(attn, q, k, v, sdpa_attention_forward, {"dropout": 0.0, "scaling": attn.scaling})
        h = h + attn.o_proj(out.reshape(1, tokens, -1).contiguous())
        x = _rms(layer.post_attention_layernorm, h)
        gate_up = _group([mlp.gate_proj, mlp.up_proj])
        if gate_up is not None:
            both, width = _product(gate_up, x), mlp.gate_proj.out_features
            gate, up = both[..., :width], both[..., width:]
        else:
            gate, up = mlp.gate_proj(x), mlp.up_proj(x)
        h = h + mlp.down_proj(mlp.act_fn(gate) * up)
    h = _rms(inner.norm, h)
    return model.lm_head(h[:, keep])[0]
