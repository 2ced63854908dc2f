"""LLM backends for the generators, registered by name: ``local`` (any model instructkit loads, through
eval's batched generation engine) and ``openai`` (any OpenAI-compatible HTTP server). ``build_backend(name,
**params)`` makes one. Every module of this package is imported here, so a new backend registers itself by
being a module here with ``@register``; nothing else lists the backends."""

import importlib
import pkgutil

from instructkit.generate.backends.base import (
    BACKENDS,
    Backend,
    BackendError,
    Reply,
    Request,
    Sampling,
    Usage,
    build_backend,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "Reply",
    "Request",
    "Sampling",
    "Usage",
    "build_backend",
    "register",
]
