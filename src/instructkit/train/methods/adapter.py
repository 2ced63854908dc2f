"""adapter: classic bottleneck adapters (Houlsby et al., 2019). After the attention output projection and
after the feed-forward output projection of every layer, ``h + up(act(down(h)))`` with a small
bottleneck; ``up`` starts at zero, so the model is unchanged before training. Only the adapters and a
classification head train.

Hand-written because PEFT has no adapters of this kind (its "adaption prompt" is LLaMA-Adapter, a
different method), and the ``adapters`` package pins transformers ~=4.57 while instructkit is on 5.x.
We wrap the projection (``Linear -> Adapter``) instead of patching forward code, so any model whose
layers name these projections like Llama or BERT works."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from instructkit.config import checked
from instructkit.train.methods.base import (
    Method,
    MethodError,
    head_parameter_names,
    layer_stack,
    register,
    train_only,
)

ATTENTION_OUTPUTS = ("self_attn.o_proj", "attention.output.dense", "self_attn.out_proj", "attn.out_proj")
"""Attention output projections, relative to a layer: Llama/Qwen/Mistral, BERT/RoBERTa, OPT/BART, CLIP-like."""
FFN_OUTPUTS = ("mlp.down_proj", "output.dense", "fc2", "mlp.fc2")
"""Feed-forward output projections, relative to a layer."""
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class Adapter(nn.Module):
    """``h + up(act(down(h)))``: hidden -> bottleneck -> hidden, with a residual."""

    def __init__(self, hidden: int, bottleneck: int, activation: str, like: torch.Tensor):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck, device=like.device, dtype=like.dtype)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, hidden, device=like.device, dtype=like.dtype)
        nn.init.zeros_(self.up.weight)  # zero update at start: the pretrained model's outputs are kept
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


class AdapterLinear(nn.Module):
    """A frozen linear projection followed by an adapter on its output."""

    def __init__(self, base: nn.Linear, adapter: Adapter):
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base(x))


def _find(layer: nn.Module, candidates: tuple[str, ...]) -> str | None:
    modules = dict(layer.named_modules())
    return next((c for c in candidates if isinstance(modules.get(c), nn.Linear)), None)


@register
@dataclass
class Adapters(Method):
    name = "adapter"
    plain_weights = False
    merge_refusal = (
        "a bottleneck adapter applies a nonlinearity between its two projections, so no weight matrix of "
        "the base architecture equals it (and plain transformers has no adapter layers to load it unmerged); "
        "train with lora to get a mergeable model"
    )
    bottleneck: int = checked(16, ge=1)
    """Width of the adapter's bottleneck (hidden -> bottleneck -> hidden)."""
    activation: str = checked("gelu", choices=tuple(ACTIVATIONS))
    """Nonlinearity between the two projections: gelu, relu, silu or tanh."""

    def apply(self, model: Any, task: str) -> nn.Module:
        self.check_task(task)
        _, stack = layer_stack(model, self.name)
        targets = []
        for i, layer in enumerate(stack):
            names = [_find(layer, ATTENTION_OUTPUTS), _find(layer, FFN_OUTPUTS)]
            if None in names:
                raise MethodError(
                    f"adapter: layer {i} of {type(model).__name__} has no linear attention output "
                    f"({' / '.join(ATTENTION_OUTPUTS)}) or feed-forward output ({' / '.join(FFN_OUTPUTS)}); use lora"
                )
            targets += [(layer, n) for n in names]
        train_only(model, head_parameter_names(model, task))
        for layer, path in targets:
            parent_path, _, child = path.rpartition(".")
            parent = layer.get_submodule(parent_path) if parent_path else layer
            linear = getattr(parent, child)
            adapter = Adapter(linear.out_features, self.bottleneck, self.activation, linear.weight)
            setattr(parent, child, AdapterLinear(linear, adapter))
        return model
