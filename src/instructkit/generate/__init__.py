"""Automatic instruction generation: LLM backends behind a request cache, and the generators, each a module
registered by name (``self-instruct``, ``evol``, ``code``). Importing the package registers them all."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("backends", "seeds"):
        importlib.import_module(f"{__name__}.{_module.name}")
