"""Task heads, one module each, registered by name. Every module of this package is imported here, so a
new head registers itself by being a module here with ``@register``; nothing else lists the heads."""

import importlib
import pkgutil

from instructkit.train.tasks.base import TASKS, LabelInfo, Task, TaskDataError, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from instructkit.train.tasks.causal_lm import CausalLM  # noqa: E402  (registered above)

DEFAULT_TASK = CausalLM.name
"""The task of a config, ``instructkit eval`` or chat that names none."""

__all__ = ["DEFAULT_TASK", "TASKS", "LabelInfo", "Task", "TaskDataError", "register"]
