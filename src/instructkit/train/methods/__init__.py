"""Fine-tuning methods, one module each, registered by name: full, freeze, lora, adapter, prompt-tuning,
bitfit, ln-tuning. ``build_method(name, params)`` makes one; ``METHODS[name].load_trained`` rebuilds."""

from instructkit.train.methods import adapter, bitfit, freeze, full, ln_tuning, lora, prompt_tuning  # noqa: F401
from instructkit.train.methods.base import METHODS, Method, MethodError, build_method, register

__all__ = ["METHODS", "Method", "MethodError", "build_method", "register"]
