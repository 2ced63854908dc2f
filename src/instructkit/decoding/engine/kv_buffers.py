"""The running batch of one adapter (:class:`Lane`) and its key/value cache, kept in buffers written in place.

A lane holds, per layer, preallocated key and value buffers ``[rows, heads, capacity, dim]`` of which the
first ``length`` columns are used. Rows are left-padded to a common length, with a per-row mask; a
decoding step writes its new column in place (:func:`slot_layer_class`, or the packed step's attention
plan) instead of concatenating the whole cache into a new tensor, as ``DynamicCache`` does. Measured on the
bundled model (8 rows, 160 positions, 1 thread): the concatenations were 20% of a decoding step on a quiet
machine and half of it when other jobs were reading memory too.

The buffers are copied only when their shape must change: when they are full (grown by ``_HEADROOM``
columns, so once per 64 decoding steps), when rows join (:meth:`Lane.join`: one copy for all the joining
rows, each left-padded to the longest) and when rows leave (:meth:`Lane.keep`, which also drops the
columns no remaining row attends to).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from instructkit.decoding.engine.requests import Request

_HEADROOM = 64  # columns allocated past the longest row: a buffer grows once per 64 decoding steps


class Lane:
    """The running batch of one adapter: rows, their KV cache (left-padded), mask, positions.

    ``layers`` holds, per layer, preallocated key and value buffers ``[rows, heads, capacity, dim]`` of
    which the first ``length`` columns are used; a decoding step writes its new column in place (the
    module says why, and what that saved)."""

    def __init__(self, name: str | None):
        self.name = name
        self.rows: list[Request] = []
        self.layers: list[list[torch.Tensor]] = []  # per layer: [keys, values] buffers, [B, heads, cap, dim]
        self.mask = torch.zeros((0, 0), dtype=torch.long)
        self.positions = torch.zeros(0, dtype=torch.long)
        self.next_tokens = torch.zeros(0, dtype=torch.long)
        self.pending: list[Request] = []  # admitted, prefilled in the lane's next step (packed mode)
        self.cache: Any = None  # a model whose cache is not batched: its one row's own cache object

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    @property
    def capacity(self) -> int:
        return self.layers[0][0].shape[2] if self.layers else 0

    def ensure_room(self, columns: int) -> None:
        """Make room for ``columns`` more columns past ``length``: when the buffers are full, copy them into
        buffers ``max(_HEADROOM, columns)`` columns longer than used (amortised over _HEADROOM steps)."""
        used = self.length
        if used + columns > self.capacity:
            cap = used + max(_HEADROOM, columns)
            self.layers = [[buffers([k[:, :, :used]], used, cap) for k in pair] for pair in self.layers]

    def keep(self, keep: list[int], device: torch.device, batched: bool) -> None:
        """Keep only rows ``keep``; drop the columns no remaining row attends to (and, ``batched``, from the
        key/value buffers too)."""
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.layers, self.mask = [], torch.zeros((0, 0), dtype=torch.long)
            self.positions = self.next_tokens = torch.zeros(0, dtype=torch.long)
            return
        index = torch.tensor(keep, dtype=torch.long)
        self.mask = self.mask[index]
        self.positions = self.positions[index]
        self.next_tokens = self.next_tokens[index]
        # columns no remaining row attends to go: leading padding, and the draft tokens no row accepted
        live = (self.mask.sum(dim=0) > 0).nonzero()[:, 0]
        self.mask = self.mask[:, live]
        if not batched:
            return
        rows, columns = index.to(device), live.to(device)
        flats: dict[torch.Size, torch.Tensor] = {}  # per buffer shape (one for every layer, in most models)

        def kept(t: torch.Tensor) -> torch.Tensor:
            if t.shape not in flats:
                flats[t.shape] = flat_index(t, rows, columns)
            return gather(t, flats[t.shape], len(keep), len(live), len(live) + _HEADROOM)

        self.layers = [[kept(t) for t in pair] for pair in self.layers]

    def join(self, new: list[tuple[Request, list[list[torch.Tensor]], int]]) -> None:
        """Merge prefilled rows ``(request, its prompt's key/value states per layer, its next token)`` into
        the batch in one copy of the buffers, left-padding every row to the longest."""
        if not new:
            return
        lengths = [len(req.prompt_ids) for req, _, _ in new]
        width = max([self.length, *lengths])
        capacity = max(self.capacity, width + _HEADROOM)
        used = self.length
        old = self.layers if self.rows else [[None, None] for _ in new[0][1]]
        self.layers = [
            [
                buffers(([ok[:, :, :used]] if ok is not None else []) + [kv[i][0] for _, kv, _ in new],
                        width, capacity),
                buffers(([ov[:, :, :used]] if ov is not None else []) + [kv[i][1] for _, kv, _ in new],
                        width, capacity),
            ]
            for i, (ok, ov) in enumerate(old)
        ]  # fmt: skip
        masks = [pad_left(self.mask, width, 1)] if self.rows else []
        masks += [pad_left(torch.ones((1, n), dtype=torch.long), width, 1) for n in lengths]
        self.mask = torch.cat(masks, dim=0)
        self.rows.extend(req for req, _, _ in new)
        self.positions = torch.cat([self.positions, torch.tensor(lengths)])
        self.next_tokens = torch.cat([self.next_tokens, torch.tensor([t for _, _, t in new])])


def buffers(rows: list[torch.Tensor], width: int, capacity: int) -> torch.Tensor:
    """One buffer ``[sum of rows, heads, capacity, dim]`` holding each part right-aligned at column
    ``width`` (left padding), zeros elsewhere (masked out, and finite)."""
    first = rows[0]
    batch = sum(r.shape[0] for r in rows)
    out = first.new_zeros((batch, first.shape[1], capacity, first.shape[3]))
    at = 0
    for r in rows:
        out[at : at + r.shape[0], :, width - r.shape[2] : width] = r
        at += r.shape[0]
    return out


def flat_index(t: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """The positions, in a buffer shaped like ``t`` seen as ``[positions, dim]``, of rows ``rows`` and columns
    ``columns`` of every head."""
    _, heads, capacity, _ = t.shape
    heads_at = torch.arange(heads, device=t.device)[None, :, None] * capacity
    return (rows[:, None, None] * (heads * capacity) + heads_at + columns[None, None, :]).reshape(-1)


def gather(t: torch.Tensor, flat: torch.Tensor, rows: int, width: int, capacity: int) -> torch.Tensor:
    """The ``rows`` x ``width`` part of buffer ``t`` at ``flat`` (:func:`flat_index`) as a new buffer of
    ``capacity`` columns, in one gather. Selecting the rows, then the columns, then copying into a zeroed
    buffer read the kept part four times, each time a reply ended: a call 39 -> 22 ms (median) for 6-8 rows
    of ~200 columns (30 layers) on the engine workload of 32 prompts."""
    dim = t.shape[3]
    out = t.new_empty((rows, t.shape[1], capacity, dim))
    out[:, :, width:].zero_()
    out[:, :, :width] = t.view(-1, dim).index_select(0, flat).view(rows, t.shape[1], width, dim)
    return out


def pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def slot_layer_class() -> type:
    """The cache layer class over a lane's preallocated buffers (made on first use: it subclasses
    transformers' ``DynamicLayer``, imported only then)."""
    from transformers.cache_utils import DynamicLayer

    class _Slot(DynamicLayer):
        """A cache layer over a lane's preallocated buffers: ``update`` writes the new columns in place and
        returns views of the used part (what ``DynamicLayer`` returns, without the copy)."""

        _layer_type = None  # never registered as transformers' layer of any type

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
            super().__init__()
            self.kbuf, self.vbuf, self.used = keys, values, length
            self.keys, self.values = keys[:, :, :length], values[:, :, :length]
            self.device = keys.device
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            end = self.used + key_states.shape[-2]
            self.kbuf[:, :, self.used : end] = key_states
            self.vbuf[:, :, self.used : end] = value_states
            self.used = end
            self.keys, self.values = self.kbuf[:, :, :end], self.vbuf[:, :, :end]
            return self.keys, self.values

    return _Slot


def cache_of(out: Any) -> Any:
    """A forward's cache (transformers 5.2x renamed ``past_key_values`` to ``cache``)."""
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values
