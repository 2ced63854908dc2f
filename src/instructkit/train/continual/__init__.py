"""Continual fine-tuning: strategies that fight forgetting across a sequence of tasks (one module each,
registered by name: naive, replay, ewc, lwf) and the forgetting metrics (``metrics``: ACC, BWT, FWT,
forgetting, general-ability delta over the score matrix R). ``build_strategy(name, params)`` makes one.

What is here are the pieces a round-by-round runner uses; the runner itself (``instructkit continual``),
its recipe, lineage/resume and the report are not built yet (docs-proposed/continual.md)."""

import importlib
import pkgutil

from instructkit.train.continual.base import (
    STRATEGIES,
    ContinualError,
    Strategy,
    build_strategy,
    register,
    strategy_class,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STRATEGIES", "ContinualError", "Strategy", "build_strategy", "register", "strategy_class"]
