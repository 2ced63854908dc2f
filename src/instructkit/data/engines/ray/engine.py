"""The Ray engine's driver side: where the blocks are, how many partitions a shuffle has, and the
bookkeeping every stage shares (the finished rows, the counts, the ordered reads, the bars).

Hand-written parts, and why: Ray Data's ``groupby().map_groups`` calls Python once per group (a million
groups of one record each for dedup), and it has no join for "fetch both signatures of a candidate pair",
so the shuffles are Ray tasks with ``num_returns`` (:meth:`Engine.shuffle`: a map side that partitions, a
reduce side that concatenates; Ray's lineage re-runs a lost task). The ordered write replaces Ray Data's
``sort``, whose driver memory grew with the data (see :meth:`Engine.in_order`). The stages made of plain
tasks show a live bar each on a terminal (``bar.StageBar``); Ray Data shows its own.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from instructkit.data.base import Step
from instructkit.data.curate_config import CurateConfig
from instructkit.data.engines.ray.bar import StageBar, driver_memory
from instructkit.data.engines.ray.blocks import (
    KEY_SAMPLE,
    PARTITION_ROWS,
    RETRIES,
    concat,
    key_sample,
    num_rows,
    range_map,
    range_reduce,
    remote,
    split_alive,
)
from instructkit.data.engines.ray.read import per_record, read_batch


class Engine:
    def __init__(self, cfg: CurateConfig, parts: int, progress: bool) -> None:
        import ray

        self.ray = ray
        self.cfg = cfg
        self.parts = parts
        self.progress = progress
        self.done: list[Any] = []  # refs of reject and source rows
        self.settled = 0  # self.done[:settled] are merged blocks (see settle)
        self.bar: StageBar | None = None

    @contextlib.contextmanager
    def stage(self, name: str, n_in: int) -> Iterator[None]:
        """A live bar for the stage (on a terminal only; see StageBar)."""
        if not (self.progress and sys.stderr.isatty()):
            yield
            return
        self.bar = StageBar(self.ray, name, n_in)
        try:
            yield
        finally:
            self.bar.close()
            self.bar = None

    def track(self, refs: list[Any]) -> list[Any]:
        """Count these tasks (their first result: a list stands for one task's results) in the bar."""
        if self.bar is not None:
            self.bar.add(refs)
        return refs

    def log(self, stage: str, n: int, t0: float) -> None:
        if self.progress:
            dt = time.perf_counter() - t0
            print(
                f"[ray] {stage}: {n} records in {dt:.1f} s ({n / max(dt, 1e-9):,.0f} records/s)"
                f"{driver_memory()}",
                file=sys.stderr,
            )

    def settle(self, group: int = 64) -> None:
        """Merge the reject blocks a stage left (one per task) into blocks of ``group``. A task's result
        under 100 KB (Ray's ``max_direct_call_object_size``) is stored in its owner's heap, here the
        driver's, and a stage's rejects are mostly such small blocks: kept as they come they made the
        driver grow with the input. Merged, they live in the object store (spilled to disk if need be)."""
        new = self.done[self.settled :]
        merged = [remote(concat).remote(*new[s : s + group]) for s in range(0, len(new), group)]
        self.done[self.settled :] = merged
        self.settled = len(self.done)

    def keep_alive(self, refs: list[Any]) -> list[Any]:
        """Split blocks into records still in (returned) and finished rows (kept for the end)."""
        alive = []
        for ref in refs:
            alive.append(self.keep(*remote(split_alive).options(num_returns=2).remote(ref)))
        return self.track(alive)

    def keep(self, alive: Any, done: Any) -> Any:
        """Keep a task's finished rows (``done``) for the end; return its block of records still in."""
        self.done.append(done)
        return alive

    def count(self, refs: list[Any]) -> int:
        return sum(self.ray.get([remote(num_rows).remote(r) for r in refs])) if refs else 0

    def data(self, refs: list[Any]) -> Any:
        return self.ray.data.from_arrow_refs(refs)

    def in_order(self, refs: list[Any], key: str) -> Iterator[pa.Table]:
        """The rows of ``refs`` sorted by the int64 column ``key``, one range partition at a time.

        Hand-written instead of Ray Data's ``sort``: measured here, its driver kept memory that grew with
        the data (+1.6 GiB at 500,000 records), where this one holds one partition (~PARTITION_ROWS rows,
        read zero-copy from the object store) at a time. The boundaries are quantiles of a sample of the
        keys (every KEY_SAMPLE-th of each block, sorted), so the driver holds 8 bytes per KEY_SAMPLE rows
        and a partition holds PARTITION_ROWS rows give or take a few KEY_SAMPLE per block."""
        refs = [
            r
            for r, n in zip(refs, self.ray.get([remote(num_rows).remote(r) for r in refs]), strict=True)
            if n
        ]
        if not refs:
            return
        keys = np.sort(np.concatenate(self.ray.get([remote(key_sample).remote(r, key) for r in refs])))
        bounds = np.unique(keys[PARTITION_ROWS // KEY_SAMPLE :: PARTITION_ROWS // KEY_SAMPLE])
        parts = len(bounds) + 1
        del keys
        maps = self.track([remote(range_map).options(num_returns=parts).remote(r, key, bounds) for r in refs])
        if parts == 1:
            maps = [[m] for m in maps]
        reduced = self.track([remote(range_reduce).remote(key, *[m[p] for m in maps]) for p in range(parts)])
        for ref in reduced:
            yield self.ray.get(ref)

    def coalesce(self, refs: list[Any], rows: int = PARTITION_ROWS) -> list[Any]:
        """Fewer, larger blocks (about ``rows`` each). Ray Data's sort keeps ~70 KB of bookkeeping per
        input block in the driver (measured: 600 blocks of 100 rows took 42 MiB, 12 of 5,000 none), and
        the stages leave thousands of small blocks of rejects behind."""
        sizes = self.ray.get([remote(num_rows).remote(r) for r in refs])
        groups: list[list[Any]] = [[]]
        filled = 0
        for ref, n in zip(refs, sizes, strict=True):
            if not n:
                continue
            if filled + n > rows and groups[-1]:
                groups.append([])
                filled = 0
            groups[-1].append(ref)
            filled += n
        return [g[0] if len(g) == 1 else remote(concat).remote(*g) for g in groups if g]

    def read(self, inputs: list[str]) -> list[Any]:
        items = [{"fi": i, "path": p} for i, p in enumerate(inputs)]
        ds = self.ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            read_batch,
            batch_size=1,
            fn_kwargs={"fmt": self.cfg.input_format, "on_error": self.cfg.on_error},
            max_retries=RETRIES,
        )
        return self.keep_alive(ds.to_arrow_refs())

    def per_record(self, alive: list[Any], steps: list[Step], stepnos: list[int]) -> list[Any]:
        # built once here, sent to each worker once (the step pickles without them: Step.ray_broadcast)
        broadcast = {
            (k, a): self.ray.put(getattr(s, a)) for k, s in enumerate(steps) for a in s.ray_broadcast
        }
        return self.map_blocks(alive, per_record, steps=steps, stepnos=stepnos, broadcast=broadcast)

    def map_blocks(self, alive: list[Any], fn: Any, **kwargs: Any) -> list[Any]:
        """Ray Data ``map_batches`` of ``fn`` over the alive blocks (Arrow batches of 1,000, retried)."""
        ds = self.data(alive).map_batches(
            fn, batch_format="pyarrow", batch_size=1000, fn_kwargs=kwargs, max_retries=RETRIES
        )
        return self.keep_alive(ds.to_arrow_refs())

    def shuffle(self, mapper: Any, refs: list[Any], *args: Any) -> list[list[Any]]:
        """Map side of a hash shuffle: partition ``p`` of every block, as ``out[p]``."""
        maps = self.track([mapper.options(num_returns=self.parts).remote(r, *args, self.parts) for r in refs])
        if self.parts == 1:
            maps = [[m] for m in maps]
        return [[m[p] for m in maps] for p in range(self.parts)]
