"""The Ray engine's read and per-record stages, as they run in a worker.

* read: one Ray Data task per input file (a shard) runs the local :class:`RecordReader`, so formats,
  detection, line numbers and ``on_error`` are the local ones; it emits rows in batches of 2,000.
* per-record steps (Filter, Mapper; consecutive ones fused): Ray Data ``map_batches`` calling the local
  :func:`~instructkit.data.base.checked_verdict`. What a step declares in ``ray_broadcast``
  (decontaminate's index) is built once on the driver and broadcast with ``ray.put`` (each worker process
  fetches it once).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from instructkit.data.base import Step, checked_verdict
from instructkit.data.engines.accounting import (
    dump_record,
    load_record,
    read_reject_row,
    reject_row,
    source_row,
)
from instructkit.data.engines.ray.blocks import (
    ERROR,
    FILE_SHIFT,
    ROWS_PER_BLOCK,
    SOURCE,
    Rows,
    is_url,
    line,
    local_path,
    with_broadcast,
)
from instructkit.files import sha256_file
from instructkit.formats import RecordReader
from instructkit.records import RecordError


def _copied(path: str, tmp: str) -> Path:
    """A remote file copied to the worker's disk (the reader needs its bytes; a shard is one worker's, so
    shards bound the memory)."""
    import fsspec

    local = Path(tmp) / path.rstrip("/").rsplit("/", 1)[-1]
    with fsspec.open(path, "rb") as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return local


def read_file(fi: int, path: str, fmt: str | None, on_error: str) -> Iterator[pa.Table]:
    """Rows of one input file, in file order (records and read rejects interleaved as they come), then a
    source summary row. A remote file is copied to the worker's disk first."""
    local = local_path(path)
    tmp = None
    if local is None:
        tmp = tempfile.mkdtemp(prefix="instructkit-read-")
        local = _copied(path, tmp)
    name = path if is_url(path) else str(Path(path))
    try:
        reader = RecordReader(local, fmt=fmt, on_error=on_error)
        rows, seq, seen = Rows(), 0, 0

        def flush_rejects() -> None:
            nonlocal seq, seen
            for r in reader.rejects[seen:]:
                rows.add(
                    fi << FILE_SHIFT | seq, stepno=0, reason=r["reason"], rej=line(read_reject_row(r, name))
                )
                seq += 1
            seen = len(reader.rejects)

        try:
            for rec in reader:
                flush_rejects()
                rows.add(fi << FILE_SHIFT | seq, dump_record(rec))
                seq += 1
                if len(rows) >= ROWS_PER_BLOCK:
                    yield rows.table()
                    rows = Rows()
        except RecordError as e:
            # on_error raise: files are read in parallel, so the error travels as a row and the driver
            # raises the first one in input order, the one the local engine (reading in order) raises
            fields = {
                k: getattr(e, k) for k in ("reason", "message", "field", "file", "line", "index", "raw")
            }
            if tmp is not None:
                fields["file"] = name
            rows.add(fi << FILE_SHIFT | seq, stepno=ERROR, rej=json.dumps(fields))
            yield rows.table()
            return
        flush_rejects()
        rows.add(fi, stepno=SOURCE, rej=json.dumps(source_row(name, sha256_file(local), reader)))
        yield rows.table()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def read_batch(batch: dict[str, Any], fmt: str | None, on_error: str) -> Iterator[pa.Table]:
    for fi, path in zip(batch["fi"], batch["path"], strict=True):
        yield from read_file(int(fi), str(path), fmt, on_error)


def per_record(
    batch: pa.Table, steps: list[Step], stepnos: list[int], broadcast: dict[tuple[int, str], Any]
) -> pa.Table:
    """Consecutive Filter/Mapper steps over one batch, each record round-tripped through JSON between
    steps as the local engine does, a dropped record leaving at its step as a reject row."""
    with_broadcast(steps, broadcast)
    rows = Rows()
    for idx, text in zip(batch["idx"].to_pylist(), batch["rec"].to_pylist(), strict=True):
        for step, no in zip(steps, stepnos, strict=True):
            rec = load_record(text)
            reason, detail, rec = checked_verdict(step, rec)
            text = dump_record(rec)
            if reason:
                reject = reject_row(step.name, reason, detail, load_record(text))
                rows.add(idx, stepno=no, reason=reason, rej=line(reject))
                break
        else:
            rows.add(idx, text)
    return rows.table()
