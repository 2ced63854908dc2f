"""naive: sequential fine-tuning, each round on the new task's data alone. The baseline every other
strategy is measured against (its BWT is the forgetting the others are meant to reduce)."""

from __future__ import annotations

from dataclasses import dataclass

from instructkit.continual.strategies.base import Strategy, register


@register
@dataclass
class Naive(Strategy):
    name = "naive"
