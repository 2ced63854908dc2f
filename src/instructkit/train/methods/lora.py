"""lora: low-rank updates ``W + (alpha/r)·B·A`` on linear layers (PEFT LoraConfig); the base weights stay
frozen and a classification head trains in full (``modules_to_save``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from instructkit.config import checked
from instructkit.train.methods.base import (
    Method,
    MethodError,
    head_module_names,
    peft_task_kwargs,
    register,
    require_peft,
)


@register
@dataclass
class Lora(Method):
    name = "lora"
    plain_weights = False  # W + (alpha/r)·B·A folds into W: ``merged`` (PEFT merge_and_unload)
    r: int = checked(8, ge=1)
    """Rank of the update matrices A (r x in) and B (out x r)."""
    alpha: float = checked(16, gt=0, finite=True)
    """Scale numerator: the update is multiplied by alpha / r."""
    dropout: float = checked(0.05, ge=0, lt=1)
    """Dropout on the input of the LoRA branch."""
    target_modules: str | list[str] = "all-linear"
    """Linear layers that get LoRA: "all-linear" (every linear layer but the output and classification
    heads) or a list of module names such as [q_proj, v_proj]."""

    def validate(self) -> None:
        if not (
            self.target_modules == "all-linear"
            or isinstance(self.target_modules, list)
            and self.target_modules
        ):
            raise MethodError(
                f"{{key}} is 'all-linear' or a list of module names, not {self.target_modules!r}",
                key="target_modules",
            )

    def apply(self, model: Any, task: str) -> nn.Module:
        self.check_task(task)
        peft = require_peft(self.name)
        head = head_module_names(model, task)
        config = peft.LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            # "all-linear" skips the head only for SEQ_CLS; a head is trained in full, never LoRA'd
            exclude_modules=head or None,
            **peft_task_kwargs(model, task),
        )
        return peft.get_peft_model(model, config)
