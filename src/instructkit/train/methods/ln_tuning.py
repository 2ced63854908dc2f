"""ln-tuning: train only the normalization layers (PEFT LNTuningConfig) and a classification head.
Tiny (a few thousand parameters) and works on models without bias terms, unlike bitfit."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from torch import nn

from instructkit.train.methods.base import Method, MethodError, peft_task_kwargs, register, require_peft


def norm_module_names(model: nn.Module) -> list[str]:
    """Last name component of every normalization layer (LayerNorm, RMSNorm, ...), e.g. ``LayerNorm`` for
    BERT, ``input_layernorm``, ``post_attention_layernorm`` and ``norm`` for Llama."""
    names = {
        n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and type(m).__name__.endswith("Norm")
    }
    return sorted(names)


@register
@dataclass
class LnTuning(Method):
    name = "ln-tuning"
    plain_weights = False  # trained copies of the norm layers replace the originals on ``merged``
    target_modules: list[str] | None = None
    """Norm layers to train, by name; null: every normalization layer in the model."""

    def apply(self, model: Any, task: str) -> nn.Module:
        self.check_task(task)
        peft = require_peft(self.name)
        targets = self.target_modules or norm_module_names(model)
        if not targets:
            raise MethodError(f"ln-tuning: {type(model).__name__} has no normalization layers; use lora")
        config = peft.LNTuningConfig(target_modules=targets, **peft_task_kwargs(model, task))
        with warnings.catch_warnings():  # PEFT asks every target for in/out features, which norms lack
            warnings.filterwarnings("ignore", message="Unsupported layer type", category=UserWarning)
            return peft.get_peft_model(model, config)
