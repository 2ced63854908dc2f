"""Continual fine-tuning: strategies that fight forgetting across a sequence of tasks (one module each,
registered by name: naive, replay, ewc, lwf, adapters) and the forgetting metrics (``metrics``: ACC, BWT,
FWT, forgetting, general-ability delta over the score matrix R). ``build_strategy(name, params)`` makes one.

These are the pieces the round-by-round runner uses; the runner (``instructkit continual``), its recipe,
lineage, resume and report live in ``instructkit/continual_run/``, which may import both train and
evaluate."""

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
