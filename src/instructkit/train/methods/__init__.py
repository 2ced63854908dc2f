"""Fine-tuning methods, one module each, registered by name: full, freeze, lora, adapter, prompt-tuning,
bitfit, ln-tuning. ``build_method(name, params)`` makes one; ``METHODS[name].load_trained`` rebuilds.
Every module of this package is imported here, so a new method registers itself by being a module here
with ``@register``; nothing else lists the methods."""

import importlib
import pkgutil

from instructkit.train.methods.base import METHODS, Method, MethodError, build_method, method_class, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Method", "MethodError", "build_method", "method_class", "register"]
