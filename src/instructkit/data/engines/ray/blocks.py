"""What the Ray engine's stages pass around: blocks of rows, the tasks over them, broadcast objects.

A block is an Arrow table ``idx, rec, stepno, reason, rej`` (:data:`SCHEMA`): ``idx`` the record's place
in the input (input file number << 40 | position in the file), ``rec`` the record as JSON while it is still
in (``stepno`` :data:`ALIVE`), else ``rej`` the finished row: a rejects.jsonl line (``stepno`` the step's
number, 0 for read), a source summary (:data:`SOURCE`) or a read error (:data:`ERROR`).

Tasks are plain functions here and in the steps' Ray forms, made Ray tasks on first use (:func:`remote`),
so every module imports without Ray.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ALIVE, SOURCE, ERROR = -1, -2, -3  # stepno of a record still in, of a source summary, of a read error
FILE_SHIFT = 40  # idx = file number << 40 | position in the file
ROWS_PER_BLOCK = 2000
SCHEMA = pa.schema(
    [
        ("idx", pa.int64()),
        ("rec", pa.string()),
        ("stepno", pa.int64()),
        ("reason", pa.string()),
        ("rej", pa.string()),
    ]
)
PARTITION_ROWS = 50_000
KEY_SAMPLE = 50  # the ordered write's partition bounds come from every 50th key
RETRIES = 3  # a task whose worker died (killed, OOM) is re-run this many times


class Rows:
    """Column lists of one output block."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {n: [] for n in SCHEMA.names}

    def add(self, idx: int, rec: str = "", stepno: int = ALIVE, reason: str = "", rej: str = "") -> None:
        for name, value in zip(SCHEMA.names, (idx, rec, stepno, reason, rej), strict=True):
            self.cols[name].append(value)

    def __len__(self) -> int:
        return len(self.cols["idx"])

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.cols, schema=SCHEMA)


def line(row: dict[str, Any]) -> str:
    """A rejects.jsonl line as ``write_rows`` writes it (without the newline)."""
    return json.dumps(row, ensure_ascii=False, allow_nan=False)


def is_url(path: str | Path) -> bool:
    return "://" in str(path)


def local_path(path: str | Path) -> Path | None:
    """A local path for ``path`` (``file://`` URLs included), or None for a remote URL."""
    text = str(path)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    return None if is_url(text) else Path(text)


def split_alive(t: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Records still in the pipeline, and the finished rows (rejects, source summaries, read errors)."""
    alive = pc.equal(t["stepno"], ALIVE)
    return t.filter(alive), t.filter(pc.invert(alive))


# ---------------------------------------------------------------------------------------------------------
# tasks and broadcast objects, once per process

_TASKS: dict[Any, Any] = {}
_BROADCAST: dict[str, Any] = {}  # object id -> value, once per worker process


def remote(fn: Any) -> Any:
    """``fn`` as a Ray task (re-run up to :data:`RETRIES` times if its worker dies), made once."""
    import ray

    if fn not in _TASKS:
        _TASKS[fn] = ray.remote(max_retries=RETRIES)(fn)
    return _TASKS[fn]


def fetch(ref: Any) -> Any:
    """The object of ``ref``, fetched once per worker process (a long-lived worker keeps the last few)."""
    import ray

    key = ref.hex()
    if key not in _BROADCAST:
        objects = list(_BROADCAST)
        for old in objects[: max(0, len(objects) - 3)]:
            del _BROADCAST[old]
        _BROADCAST[key] = ray.get(ref)
    return _BROADCAST[key]


def with_broadcast(steps: list[Any], refs: dict[tuple[int, str], Any]) -> None:
    """Put each step's broadcast attributes (``Step.ray_broadcast``) in its slot: the cached_property's,
    so the worker never builds them itself."""
    for (k, attr), ref in refs.items():
        if attr not in steps[k].__dict__:
            steps[k].__dict__[attr] = fetch(ref)


# small tasks of the driver's bookkeeping


def num_rows(t: pa.Table) -> int:
    return t.num_rows


def concat(*tables: pa.Table) -> pa.Table:
    return pa.concat_tables(tables)


def key_sample(t: pa.Table, key: str) -> np.ndarray:
    return np.sort(t[key].to_numpy())[::KEY_SAMPLE]


def range_map(t: pa.Table, key: str, bounds: np.ndarray) -> Any:
    part = np.searchsorted(bounds, t[key].to_numpy(), side="right")
    out = [t.filter(pa.array(part == p)) for p in range(len(bounds) + 1)]
    return out if len(out) > 1 else out[0]


def range_reduce(key: str, *tables: pa.Table) -> pa.Table:
    t = pa.concat_tables(tables)
    return t.take(pc.sort_indices(t, sort_keys=[(key, "ascending")]))


def read_errors(t: pa.Table) -> list[tuple[int, str]]:
    return [
        (i, e)
        for i, no, e in zip(*(t[c].to_pylist() for c in ("idx", "stepno", "rej")), strict=True)
        if no == ERROR
    ]


def order_key(t: pa.Table) -> pa.Table:
    """rejects.jsonl's order, (step, input position), as one int64: (stepno + 3) << 58 | idx."""
    step = t["stepno"].to_numpy() + 3
    return t.append_column("order", pa.array((step << 58) | t["idx"].to_numpy()))
