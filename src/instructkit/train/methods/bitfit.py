"""bitfit: train only the bias terms (Ben Zaken et al., 2022) and a classification head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from instructkit.train.methods.base import (
    Method,
    MethodError,
    head_parameter_names,
    layer_stack,
    register,
    train_only,
)


@register
@dataclass
class BitFit(Method):
    name = "bitfit"

    def apply(self, model: Any, task: str) -> nn.Module:
        self.check_task(task)
        stack_name, _ = layer_stack(model, self.name)
        biases = {n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"}
        if not any(n.startswith(stack_name + ".") for n in biases):
            # Llama-family models (SmolLM2 included) have no biases: bitfit would train nothing but the head
            raise MethodError(
                f"bitfit trains bias terms only, and the transformer layers of this model "
                f"({model.config.model_type}) have none; use ln-tuning (norm layers only, as small) or lora instead"
            )
        train_only(model, biases | head_parameter_names(model, task))
        return model
