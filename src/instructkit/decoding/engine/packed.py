"""Linear layers on oneDNN's prepacked fp32 weights while the engine decodes on a CPU.

Why: a decoding step multiplies a few rows (one per running request, plus the tokens of joining prompts) by
every weight matrix of the model. PyTorch's default fp32 ``linear`` on a CPU (MKL's sgemm over the row-major
weight) handles so few rows poorly; oneDNN, given the weight once reordered into its blocked layout
(``torch.ops.mkldnn._reorder_linear_weight``, the copy inductor's freezing pass makes for fp32 linears on
CPU), does the same product in about half the time. Measured on the 2-core build machine, one thread, fp32
SmolLM2-135M: 8 rows x (576 -> 1536) 302 us -> 169 us, the 49,152-token output layer over 8 rows 19.0 ms
-> 10.2 ms, and a whole 8-row decoding step 92-115 ms -> 61 ms (two threads: 75 -> 50 ms); greedy replies
identical to one-request ``generate`` (the engine's tests compare them token for token). Done here by hand
because the alternatives need what a user's laptop may lack: ``torch.compile`` needs a C++ compiler and
minutes of warm-up, IPEX is a separate install that follows torch releases late.

The packed copy never goes stale and never reaches training: a call with gradients enabled, another dtype
or device, runs the plain ``linear``; a weight that changed since it was packed (its version counter moved,
or the parameter was replaced: a merged adapter, a training step) is packed again before use. ``restore``
gives the layers back as they came. The copy costs the weights' size once more in memory.
"""

from __future__ import annotations

import logging
import os
import types
from typing import Any

import torch

log = logging.getLogger("instructkit.serve")

ROWS_HINT = 8  # the row count oneDNN lays the weight out for; 1 to 512 rows all run faster than sgemm here

FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
"""Sibling layers of one module that read the same input (Llama-family attention and MLP): the first one
called computes one packed product over their stacked weights, and each takes its columns. A product costs
about 0.1 ms more than its bytes on this CPU, and a step runs 7 per layer; fused, 4. Measured on the 2-core
build machine, two threads, the 30 layers' q/k/v and gate/up products of SmolLM2-135M: 1 row 17.8 -> 15.7
ms, 8 rows 28.4 -> 22.8 ms, 16 rows 31.2 -> 29.8 ms; the numbers are the same to the bit (oneDNN reduces
each output over the same inputs in the same order; ``tests/test_packed_linear.py`` compares them)."""


def _version(weight: torch.Tensor) -> int | None:
    try:
        return weight._version
    except RuntimeError:  # an inference tensor has no version counter (and cannot change in place)
        return None


def _pack(weight: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), ROWS_HINT)


def _forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu" or w.dtype != x.dtype:
        return torch.nn.functional.linear(x, w, self.bias)
    source, version, packed = self._instructkit_packed
    if source is not w or version != _version(w):
        packed = _pack(w)
        self._instructkit_packed = (w, _version(w), packed)
    return torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, "none", [], "")


class _Group:
    """Sibling linear layers computed as one packed product (:data:`FUSED`). The product over an input is
    kept until every member has taken its columns; a member called with another input (or twice with the
    same one) has the product computed again, so the numbers never depend on the call order."""

    def __init__(self, layers: list[torch.nn.Linear]) -> None:
        self.layers = layers
        self.sizes = [m.out_features for m in layers]
        self.source: list[tuple[torch.Tensor, int | None]] = []
        self.packed: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.kept: tuple[torch.Tensor, dict[int, torch.Tensor], set[int]] | None = None

    def weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The stacked weights packed (again, if a member's weight changed since), and the stacked bias."""
        now = [(m.weight, _version(m.weight)) for m in self.layers]
        stale = len(now) != len(self.source) or any(
            w is not w0 or v != v0 for (w, v), (w0, v0) in zip(now, self.source, strict=False)
        )
        if stale or self.packed is None:  # packed again when a member's weight changed (as _forward)
            with torch.no_grad():
                self.packed = _pack(torch.cat([m.weight.detach() for m in self.layers]))
                biases = [m.bias for m in self.layers]
                self.bias = None if biases[0] is None else torch.cat([b.detach() for b in biases])
            self.source = now
        return self.packed, self.bias

    def take(self, layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        kept = self.kept
        if kept is None or kept[0] is not x or id(layer) in kept[2]:
            packed, bias = self.weights()
            out = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
            parts = dict(zip((id(m) for m in self.layers), out.split(self.sizes, dim=-1), strict=True))
            kept = self.kept = (x, parts, set())
        kept[2].add(id(layer))
        if len(kept[2]) == len(self.layers):
            self.kept = None  # every member has its columns: the input and the product are not held
        return kept[1][id(layer)]


def _fused_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu" or w.dtype != x.dtype:
        return torch.nn.functional.linear(x, w, self.bias)
    return self._instructkit_group.take(self, x)


def _groups(model: Any) -> list[list[torch.nn.Linear]]:
    """The :data:`FUSED` sets of ``model``: plain fp32 linear children of one module with those names, the
    same input size, and all or none with a bias."""
    out = []
    for module in model.modules():
        for names in FUSED:
            layers = [getattr(module, n, None) for n in names]
            if not all(type(m) is torch.nn.Linear and "forward" not in vars(m) for m in layers):
                continue
            if len({m.in_features for m in layers}) == 1 and len({m.bias is None for m in layers}) == 1:
                out.append(layers)
    return out


def _free_memory() -> int | None:
    """Bytes of memory available now: Linux's MemAvailable (free plus what the page cache gives back), else
    the free pages sysconf reports; None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def usable(model: Any) -> str | None:
    """Why the packed path cannot serve ``model`` (None: it can): it needs fp32 weights on a CPU, room for
    the packed copy (at most half the memory free now), and a oneDNN build whose packed product gives plain
    ``linear``'s numbers."""
    params = list(model.parameters())
    if not params or params[0].device.type != "cpu" or params[0].dtype != torch.float32:
        return "the model is not fp32 on a CPU"
    size = sum(m.weight.numel() * 4 for m in model.modules() if type(m) is torch.nn.Linear)
    free = _free_memory()
    if free is not None and size > free // 2:
        return f"a packed copy of the weights ({size / 2**30:.1f} GiB) would take over half the free memory"
    if not torch.backends.mkldnn.is_available():
        return "this torch build has no oneDNN"
    try:
        w, x = torch.randn(48, 40), torch.randn(3, 40)
        with torch.inference_mode():
            got = torch.ops.mkldnn._linear_pointwise(x, _pack(w), None, "none", [], "")
        if float((got - x @ w.T).abs().max()) > 1e-4:
            return "oneDNN's packed product differs from linear's here"
    except Exception as e:  # an old build or a CPU oneDNN does not handle
        return f"oneDNN's packed linear failed ({type(e).__name__})"
    return None


def install(model: Any) -> list[torch.nn.Linear]:
    """Route every ``nn.Linear`` of ``model`` through its packed weight (the :data:`FUSED` siblings through
    one packed product); returns the layers changed (for :func:`restore`). Changes nothing and logs why where :func:`usable` says no."""
    why = usable(model)
    if why:
        log.info("decoding with plain linear layers: %s", why)
        return []
    changed = []
    for layers in _groups(model):
        group = _Group(layers)
        for module in layers:
            module._instructkit_group = group
            module.forward = types.MethodType(_fused_forward, module)
            changed.append(module)
    for module in model.modules():
        if type(module) is torch.nn.Linear and "forward" not in vars(module):
            module._instructkit_packed = (module.weight, _version(module.weight), _pack(module.weight))
            module.forward = types.MethodType(_forward, module)
            changed.append(module)
    return changed


def restore(layers: list[torch.nn.Linear]) -> None:
    """Give the layers :func:`install` changed back their own ``forward`` and drop the packed copies."""
    for module in layers:
        vars(module).pop("forward", None)
        vars(module).pop("_instructkit_packed", None)
        vars(module).pop("_instructkit_group", None)
