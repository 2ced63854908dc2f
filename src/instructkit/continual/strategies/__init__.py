"""Continual strategies that fight forgetting across a sequence of tasks, one module each, registered by
name (naive, replay, ewc, lwf, adapters); ``build_strategy(name, params)`` makes one. What a strategy is
and the hooks it owns: ``base``. Every module of this package is imported here, so a strategy registers
itself by being a module with ``@register``."""

import importlib
import pkgutil

from instructkit.continual.strategies.base import (
    STRATEGIES,
    ContinualError,
    RoundRecords,
    Strategy,
    build_strategy,
    register,
    strategy_class,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "STRATEGIES",
    "ContinualError",
    "RoundRecords",
    "Strategy",
    "build_strategy",
    "register",
    "strategy_class",
]
