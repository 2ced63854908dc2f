"""freeze: train only the top transformer layers, whatever sits above them (final norm, pooler, MLM head
transform) and a classification head. Embeddings and the output embedding matrix (tied or not) stay frozen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


@register
@dataclass
class Freeze(Method):
    name = "freeze"
    layers: int = checked(2, ge=1)
    """How many of the top transformer layers train; the layers below them stay frozen."""

    def apply(self, model: Any, task: str) -> nn.Module:
        self.check_task(task)
        stack_name, stack = layer_stack(model, self.name)
        if self.layers > len(stack):
            raise MethodError(
                f"freeze: layers={self.layers} but the model has {len(stack)}; use full to train all"
            )
        top = tuple(f"{stack_name}.{i}." for i in range(len(stack) - self.layers, len(stack)))
        embeddings = {id(model.get_input_embeddings().weight)}
        if model.get_output_embeddings() is not None:
            embeddings.add(id(model.get_output_embeddings().weight))
        train, above = set(), False
        # Parameters come in registration order: embeddings, layers, then what sits above the layers.
        for n, p in model.named_parameters():
            if n.startswith(stack_name + "."):
                above = True
                if n.startswith(top):
                    train.add(n)
            elif above and id(p) not in embeddings:
                train.add(n)
        train_only(model, train | head_parameter_names(model, task))
        return model
