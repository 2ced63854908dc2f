"""full: every parameter trains. The baseline; what it saves is the whole model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from instructkit.train.methods.base import Method, register


@register
@dataclass
class Full(Method):
    name = "full"

    def apply(self, model: Any, task: str) -> nn.Module:
        self.check_task(task)
        for p in model.parameters():
            p.requires_grad_(True)
        return model
