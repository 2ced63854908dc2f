"""The Ray engine of ``instructkit data curate``: the same step objects, the same decisions, on a Ray cluster.

``curate(..., CurateConfig(engine="ray"))`` writes byte-identical train/val/test/rejects files and the
same card counts as the local engine. Every record carries ``idx``, its place in the input (input file
number << 40 | position in the file), so "first" and "input order" mean what they mean locally wherever
the record travels; nothing is kept in one process but counts, the split's unit table and the
near-duplicate edges (and, for outputs other than plain .jsonl, the split being written).

Stages (a block is an Arrow table ``idx, rec, stepno, reason, rej``; ``rec`` the record as JSON):

* read: one Ray Data task per input file (a shard) runs the local :class:`RecordReader`, so formats,
  detection, line numbers and ``on_error`` are the local ones; it emits rows in batches of 2,000.
* per-record steps (Filter, Mapper; consecutive ones fused): Ray Data ``map_batches`` calling the local
  :func:`checked_verdict`. The decontamination index is built once on the driver and broadcast with
  ``ray.put`` (each worker process fetches it once).
* exact_dedup: a hash shuffle on the key's normalized hash; each partition keeps the smallest ``idx``.
* near_dedup: the standard distributed MinHash-LSH, on the local module's own functions: (1) shuffle by
  normalized text (texts equal after normalization merge at once, as locally; only the first is hashed),
  signatures per partition (``_signatures``), one 64-bit key per band (``_band_key``); (2) one shuffle of
  ``(band, key, idx)`` so each bucket sits in one partition, windowed pairs (``_bucket_pairs``: the same
  pairs as locally, bucket members in ``idx`` order); (3) each candidate pair verified where its two
  signatures live (``_agreement_ok`` then exact Jaccard, ``_exact_jaccard_ok``); (4) connected
  components of the merged pairs on the driver (``_components``; a cluster's label is its smallest
  ``idx``, i.e. the record the local engine keeps).
* split: the unit table (unit key, stratum; a few dozen bytes per record) goes to the driver, which runs
  the local :func:`unit_assignment`; workers get the test/val units and tag each record.
* write: a range partition on ``idx`` (exact quantiles; each partition sorted in a task), streamed through
  the driver into the split files one partition at a time; the rejects likewise by ``(step, idx)``.

Hand-written parts, and why: Ray Data's ``groupby().map_groups`` calls Python once per group (a million
groups of one record each for dedup), and it has no join for "fetch both signatures of a candidate pair",
so the shuffles here are Ray tasks with ``num_returns`` (a map side that partitions, a reduce side that
concatenates; Ray's lineage re-runs a lost task) and the components run on the driver over the merged
pairs only (a few bytes per near-duplicate, not per record). The ordered write replaces Ray Data's
``sort``, whose driver memory grew with the data (see :meth:`_Engine.in_order`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from instructkit.data.base import DatasetStep, Filter, Mapper, Step, StepConfigError
from instructkit.data.decontam.step import Decontaminate
from instructkit.data.dedup import near_dup
from instructkit.data.dedup.steps import ExactDedup, NearDedup, dedup_key, normalized_hash
from instructkit.data.pipeline import (
    CurateConfig,
    CurateResult,
    StepReport,
    _dumps,
    _loads,
    _reject,
    build_card,
    check_output_folder,
    checked_verdict,
)
from instructkit.data.split import SPLITS, _stratum, _unit_key, unit_assignment
from instructkit.data.stats import Summary
from instructkit.formats import RecordReader, get_format, write_records
from instructkit.formats.atomic import OutputError, recover_folder, replaced_folder
from instructkit.formats.io import sha256_file
from instructkit.records import Record, RecordError

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
RETRIES = 3  # a task whose worker died (killed, OOM) is re-run this many times


class _Rows:
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


def _line(row: dict[str, Any]) -> str:
    """A rejects.jsonl line as ``write_rows`` writes it (without the newline)."""
    return json.dumps(row, ensure_ascii=False, allow_nan=False)


def _is_url(path: str | Path) -> bool:
    return "://" in str(path)


def _local_path(path: str | Path) -> Path | None:
    """A local path for ``path`` (``file://`` URLs included), or None for a remote URL."""
    text = str(path)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    return None if _is_url(text) else Path(text)


# ---------------------------------------------------------------------------------------------------------
# read


def _read_file(fi: int, path: str, fmt: str | None, on_error: str) -> Iterator[pa.Table]:
    """Rows of one input file, in file order (records and read rejects interleaved as they come), then a
    source summary row. A remote file is copied to the worker's disk first (the reader needs its bytes;
    a shard is one worker's, so shards bound the memory)."""
    local = _local_path(path)
    tmp = None
    if local is None:
        import fsspec

        tmp = tempfile.mkdtemp(prefix="instructkit-read-")
        local = Path(tmp) / path.rstrip("/").rsplit("/", 1)[-1]
        with fsspec.open(path, "rb") as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    name = path if _is_url(path) else str(Path(path))
    try:
        reader = RecordReader(local, fmt=fmt, on_error=on_error)
        rows, seq, seen = _Rows(), 0, 0

        def flush_rejects() -> None:
            nonlocal seq, seen
            for r in reader.rejects[seen:]:
                entry = {
                    "step": "read",
                    "reason": r["reason"],
                    "detail": r["message"],
                    "id": None,
                    "source": name,
                    "line": r["line"],
                    "index": r["index"],
                    "field": r["field"],
                    "record": r.get("raw"),
                }
                rows.add(fi << FILE_SHIFT | seq, stepno=0, reason=r["reason"], rej=_line(entry))
                seq += 1
            seen = len(reader.rejects)

        try:
            for rec in reader:
                flush_rejects()
                rows.add(fi << FILE_SHIFT | seq, _dumps(rec))
                seq += 1
                if len(rows) >= ROWS_PER_BLOCK:
                    yield rows.table()
                    rows = _Rows()
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
        source = {
            "path": name,
            "sha256": sha256_file(local),
            "format": reader.fmt,
            "read": reader.n_read,
            "rejected": len(reader.rejects),
        }
        rows.add(fi, stepno=SOURCE, rej=json.dumps(source))
        yield rows.table()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _read_batch(batch: dict[str, Any], fmt: str | None, on_error: str) -> Iterator[pa.Table]:
    for fi, path in zip(batch["fi"], batch["path"], strict=True):
        yield from _read_file(int(fi), str(path), fmt, on_error)


# ---------------------------------------------------------------------------------------------------------
# per-record steps

_BROADCAST: dict[str, Any] = {}  # object id -> value, once per worker process


def _fetch(ref: Any) -> Any:
    import ray

    key = ref.hex()
    if key not in _BROADCAST:
        objects = [k for k in _BROADCAST if k != "tasks"]
        for old in objects[: max(0, len(objects) - 3)]:  # a long-lived worker keeps the last few only
            del _BROADCAST[old]
        _BROADCAST[key] = ray.get(ref)
    return _BROADCAST[key]


def _per_record(
    batch: pa.Table, steps: list[Step], stepnos: list[int], index_refs: dict[int, Any]
) -> pa.Table:
    """Consecutive Filter/Mapper steps over one batch, each record round-tripped through JSON between
    steps as the local engine does, a dropped record leaving at its step as a reject row."""
    for k, ref in index_refs.items():
        if "index" not in steps[k].__dict__:
            steps[k].__dict__["index"] = _fetch(ref)  # the cached_property's slot: no rebuild here
    rows = _Rows()
    for idx, text in zip(batch["idx"].to_pylist(), batch["rec"].to_pylist(), strict=True):
        for step, no in zip(steps, stepnos, strict=True):
            rec = _loads(text)
            reason, detail, rec = checked_verdict(step, rec)
            text = _dumps(rec)
            if reason:
                rows.add(
                    idx, stepno=no, reason=reason, rej=_line(_reject(step.name, reason, detail, _loads(text)))
                )
                break
        else:
            rows.add(idx, text)
    return rows.table()


def _mark_clusters(batch: pa.Table, step: NearDedup, stepno: int, labels_ref: Any) -> pa.Table:
    """near_dedup's verdicts: a record's cluster is its label's record (itself when it merged with
    nothing); the label keeps (meta.cluster = its id), the others are rejects (``action: drop``)."""
    nodes, labels, rep_ids = _fetch(labels_ref)
    rows = _Rows()
    for idx, text in zip(batch["idx"].to_pylist(), batch["rec"].to_pylist(), strict=True):
        rec = _loads(text)
        pos = int(np.searchsorted(nodes, idx))
        label = int(labels[pos]) if pos < len(nodes) and nodes[pos] == idx else idx
        rep = rec.id if label == idx else rep_ids[label]
        if label == idx or step.action == "mark":
            rec.meta.update({"cluster": rep})
            rows.add(idx, _dumps(rec))
        else:
            detail = f"cluster of {rep}"
            rows.add(
                idx,
                stepno=stepno,
                reason="near_duplicate",
                rej=_line(_reject(step.name, "near_duplicate", detail, rec)),
            )
    return rows.table()


# ---------------------------------------------------------------------------------------------------------
# Ray tasks (defined when Ray is imported, so the module imports without it)


def _tasks() -> Any:
    import ray

    if "tasks" in _BROADCAST:
        return _BROADCAST["tasks"]

    @ray.remote(max_retries=RETRIES)
    def split_alive(t: pa.Table) -> tuple[pa.Table, pa.Table]:
        return split_alive_local(t)

    @ray.remote(max_retries=RETRIES)
    def order_key(t: pa.Table) -> pa.Table:
        """rejects.jsonl's order, (step, input position), as one int64: (stepno + 3) << 58 | idx."""
        step = t["stepno"].to_numpy() + 3
        return t.append_column("order", pa.array((step << 58) | t["idx"].to_numpy()))

    @ray.remote(max_retries=RETRIES)
    def exact_map(t: pa.Table, key: str, parts: int) -> list[pa.Table]:
        recs = [_loads(s) for s in t["rec"].to_pylist()]
        hashes = [normalized_hash(dedup_key(r, key)) for r in recs]
        part = np.array([int(h[:15], 16) % parts for h in hashes], dtype=np.int64)
        t = t.append_column("h", pa.array(hashes, pa.string())).append_column(
            "rid", pa.array([r.id for r in recs], pa.string())
        )
        out = [t.filter(pa.array(part == p)) for p in range(parts)]
        return out if parts > 1 else out[0]

    @ray.remote(max_retries=RETRIES)
    def exact_reduce(name: str, stepno: int, *parts: pa.Table) -> tuple[pa.Table, pa.Table]:
        t = pa.concat_tables(parts)
        t = t.take(pc.sort_indices(t, sort_keys=[("h", "ascending"), ("idx", "ascending")]))
        rows, first_h, first_id = _Rows(), None, ""
        for idx, text, h, rid in zip(*(t[c].to_pylist() for c in ("idx", "rec", "h", "rid")), strict=True):
            if h != first_h:
                first_h, first_id = h, rid
                rows.add(idx, text)
            else:
                detail = f"duplicate of {first_id}"
                reject = _reject(name, "exact_duplicate", detail, _loads(text))
                rows.add(idx, stepno=stepno, reason="exact_duplicate", rej=_line(reject))
        return split_alive_local(rows.table())

    @ray.remote(max_retries=RETRIES)
    def norm_map(t: pa.Table, key: str, parts: int) -> list[pa.Table]:
        recs = [_loads(s) for s in t["rec"].to_pylist()]
        norms = [near_dup.normalize_for_dedup(dedup_key(r, key)) for r in recs]
        part = np.array(
            [zlib.crc32(n.encode("utf-8", "surrogatepass")) % parts for n in norms], dtype=np.int64
        )
        t = pa.table(
            {
                "idx": t["idx"],
                "norm": pa.array(norms, pa.string()),
                "rid": pa.array([r.id for r in recs], pa.string()),
            }
        )
        nonempty = np.array([bool(n) for n in norms], dtype=bool)  # empty after normalization: never merged
        out = [t.filter(pa.array(nonempty & (part == p))) for p in range(parts)]
        return out if parts > 1 else out[0]

    @ray.remote(max_retries=RETRIES)
    def norm_reduce(params: dict[str, Any], parts_out: int, *parts: pa.Table) -> list[Any]:
        """Exact-text merges, signatures and band keys of one partition's texts."""
        t = pa.concat_tables(parts)
        t = t.take(pc.sort_indices(t, sort_keys=[("norm", "ascending"), ("idx", "ascending")]))
        idx = np.asarray(t["idx"], dtype=np.int64)
        norms = t["norm"].to_pylist()
        first = np.ones(len(norms), dtype=bool)
        first[1:] = np.array([a != b for a, b in zip(norms[1:], norms[:-1], strict=True)], dtype=bool)
        group_first = np.maximum.accumulate(np.where(first, np.arange(len(norms)), 0))
        dup = ~first
        edges = (idx[group_first[dup]], idx[dup])
        order = np.argsort(idx[first], kind="stable")
        rep_idx = idx[first][order]
        rep_norm = [norms[k] for k in np.flatnonzero(first)[order].tolist()]
        sig = near_dup._signatures(
            rep_norm, params["num_perm"], params["ngram"], params["unit"], params["seed"]
        )
        bands, rows = params["bands"], params["rows"]
        keys = [near_dup._band_key(sig, b, rows) for b in range(bands)]
        band_parts = []
        for q in range(parts_out):
            sel = [np.flatnonzero(k % np.uint64(parts_out) == np.uint64(q)) for k in keys]
            band_parts.append(
                (
                    np.concatenate([np.full(len(s), b, dtype=np.int32) for b, s in enumerate(sel)]),
                    np.concatenate([keys[b][s] for b, s in enumerate(sel)]),
                    np.concatenate([rep_idx[s] for s in sel]),
                )
            )
        ids = (idx, t["rid"].to_pylist())
        return [(rep_idx, rep_norm, sig), edges, ids, *band_parts]

    @ray.remote(max_retries=RETRIES)
    def bucket_pairs(*parts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        band = np.concatenate([p[0] for p in parts])
        key = np.concatenate([p[1] for p in parts])
        idx = np.concatenate([p[2] for p in parts])
        out_i, out_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for b in np.unique(band).tolist():
            sel = np.flatnonzero(band == b)
            sel = sel[np.argsort(idx[sel], kind="stable")]
            for i, j in near_dup._bucket_pairs(key[sel], idx[sel]):
                out_i.append(i)
                out_j.append(j)
        return _unique_pairs(np.concatenate(out_i), np.concatenate(out_j))

    @ray.remote(max_retries=RETRIES)
    def verify(
        params: dict[str, Any], pi: np.ndarray, pj: np.ndarray, *sides: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate pairs whose both signatures are here: the local prefilter then the exact Jaccard."""
        rep_idx = np.concatenate([s[0] for s in sides])
        order = np.argsort(rep_idx, kind="stable")
        rep_idx = rep_idx[order]
        norms_all = [n for s in sides for n in s[1]]
        norms = [norms_all[k] for k in order.tolist()]
        sig = np.concatenate([s[2] for s in sides])[order]
        a, b = np.searchsorted(rep_idx, pi), np.searchsorted(rep_idx, pj)
        ok = near_dup._agreement_ok(sig, a, b, params["threshold"])
        a, b, pi, pj = a[ok], b[ok], pi[ok], pj[ok]
        if len(a):
            ok = near_dup._exact_jaccard_ok(norms, a, b, params["threshold"], params["ngram"], params["unit"])
            pi, pj = pi[ok], pj[ok]
        return pi, pj

    @ray.remote(max_retries=RETRIES)
    def ids_of(ids: tuple[np.ndarray, list[str]], wanted: np.ndarray) -> dict[int, str]:
        idx, rids = ids
        hit = np.flatnonzero(np.isin(idx, wanted))
        return {int(idx[k]): rids[k] for k in hit.tolist()}

    @ray.remote(max_retries=RETRIES)
    def unit_rows(t: pa.Table, by_cluster: bool, stratify: str | None) -> pa.Table:
        recs = [_loads(s) for s in t["rec"].to_pylist()]
        return pa.table(
            {
                "idx": t["idx"],
                "unit": pa.array([_unit_key(r, by_cluster) for r in recs], pa.string()),
                "stratum": pa.array([_stratum(r, stratify) for r in recs], pa.string()),
            }
        )

    tasks = {k: v for k, v in locals().items() if hasattr(v, "remote")}
    _BROADCAST["tasks"] = tasks
    return tasks


def split_alive_local(t: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Records still in the pipeline, and the finished rows (rejects, source summaries, read errors)."""
    alive = pc.equal(t["stepno"], ALIVE)
    return t.filter(alive), t.filter(pc.invert(alive))


def _unique_pairs(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(i):
        return i, j
    order = np.lexsort((j, i))
    i, j = i[order], j[order]
    keep = np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1])]
    return i[keep], j[keep]


def _add_split(batch: pa.Table, by_cluster: bool, assignment_ref: Any) -> pa.Table:
    assignment = _fetch(assignment_ref)
    units = [_unit_key(_loads(s), by_cluster) for s in batch["rec"].to_pylist()]
    return batch.append_column("split", pa.array([assignment.get(u, "train") for u in units], pa.string()))


# ---------------------------------------------------------------------------------------------------------
# the driver


def _driver_memory() -> str:
    """This process's private memory (Linux), for the stage lines: what the driver itself holds."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            kb = sum(
                int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty"))
            )
    except OSError:
        return ""
    return f"; driver {kb / 1024:.0f} MiB private"


class _Engine:
    def __init__(self, cfg: CurateConfig, parts: int, progress: bool) -> None:
        import ray

        self.ray = ray
        self.cfg = cfg
        self.parts = parts
        self.progress = progress
        self.t = _tasks()
        self.done: list[Any] = []  # refs of reject and source rows

    def log(self, stage: str, n: int, t0: float) -> None:
        if self.progress:
            dt = time.perf_counter() - t0
            print(
                f"[ray] {stage}: {n} records in {dt:.1f} s ({n / max(dt, 1e-9):,.0f} records/s)"
                f"{_driver_memory()}",
                file=sys.stderr,
            )

    def keep_alive(self, refs: list[Any]) -> list[Any]:
        """Split blocks into records still in (returned) and finished rows (kept for the end)."""
        alive = []
        for ref in refs:
            a, d = self.t["split_alive"].options(num_returns=2).remote(ref)
            alive.append(a)
            self.done.append(d)
        return alive

    def count(self, refs: list[Any]) -> int:
        return sum(self.ray.get([_num_rows.remote(r) for r in refs])) if refs else 0

    def data(self, refs: list[Any]) -> Any:
        return self.ray.data.from_arrow_refs(refs)

    def in_order(self, refs: list[Any], key: str) -> Iterator[pa.Table]:
        """The rows of ``refs`` sorted by the int64 column ``key``, one range partition at a time.

        Hand-written instead of Ray Data's ``sort``: measured here, its driver kept memory that grew with
        the data (+1.6 GiB at 500,000 records), where this one holds one partition (~PARTITION_ROWS rows,
        read zero-copy from the object store) at a time. The boundaries are exact quantiles of the keys,
        which the driver gathers (8 bytes a row)."""
        refs = [r for r, n in zip(refs, self.ray.get([_num_rows.remote(r) for r in refs]), strict=True) if n]
        if not refs:
            return
        keys = np.sort(np.concatenate(self.ray.get([_column.remote(r, key) for r in refs])))
        bounds = keys[PARTITION_ROWS::PARTITION_ROWS]
        parts = len(bounds) + 1
        del keys
        maps = [_range_map.options(num_returns=parts).remote(r, key, bounds) for r in refs]
        if parts == 1:
            maps = [[m] for m in maps]
        reduced = [_range_reduce.remote(key, *[m[p] for m in maps]) for p in range(parts)]
        for ref in reduced:
            yield self.ray.get(ref)

    def coalesce(self, refs: list[Any], rows: int = PARTITION_ROWS) -> list[Any]:
        """Fewer, larger blocks (about ``rows`` each). Ray Data's sort keeps ~70 KB of bookkeeping per
        input block in the driver (measured: 600 blocks of 100 rows took 42 MiB, 12 of 5,000 none), and
        the stages leave thousands of small blocks of rejects behind."""
        sizes = self.ray.get([_num_rows.remote(r) for r in refs])
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
        return [g[0] if len(g) == 1 else _concat.remote(*g) for g in groups if g]

    def read(self, inputs: list[str]) -> list[Any]:
        items = [{"fi": i, "path": p} for i, p in enumerate(inputs)]
        ds = self.ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _read_batch,
            batch_size=1,
            fn_kwargs={"fmt": self.cfg.input_format, "on_error": self.cfg.on_error},
            max_retries=RETRIES,
        )
        return self.keep_alive(ds.to_arrow_refs())

    def per_record(self, alive: list[Any], steps: list[Step], stepnos: list[int]) -> list[Any]:
        index_refs = {}
        for k, step in enumerate(steps):
            if isinstance(step, Decontaminate):  # built once here, sent to each worker once
                index_refs[k] = self.ray.put(step.index)
        bare = steps  # Decontaminate pickles without its index (__getstate__); workers get it from index_refs
        return self.map_blocks(alive, _per_record, steps=bare, stepnos=stepnos, index_refs=index_refs)

    def map_blocks(self, alive: list[Any], fn: Any, **kwargs: Any) -> list[Any]:
        """Ray Data ``map_batches`` of ``fn`` over the alive blocks (Arrow batches of 1,000, retried)."""
        ds = self.data(alive).map_batches(
            fn, batch_format="pyarrow", batch_size=1000, fn_kwargs=kwargs, max_retries=RETRIES
        )
        return self.keep_alive(ds.to_arrow_refs())

    def shuffle(self, mapper: Any, refs: list[Any], *args: Any) -> list[list[Any]]:
        """Map side of a hash shuffle: partition ``p`` of every block, as ``out[p]``."""
        maps = [mapper.options(num_returns=self.parts).remote(r, *args, self.parts) for r in refs]
        if self.parts == 1:
            maps = [[m] for m in maps]
        return [[m[p] for m in maps] for p in range(self.parts)]

    def exact_dedup(self, alive: list[Any], step: ExactDedup, stepno: int) -> list[Any]:
        out = []
        for part in self.shuffle(self.t["exact_map"], alive, step.key):
            a, d = self.t["exact_reduce"].options(num_returns=2).remote(step.name, stepno, *part)
            out.append(a)
            self.done.append(d)
        return out

    def near_dedup(self, alive: list[Any], step: NearDedup, stepno: int) -> list[Any]:
        ray, t, parts = self.ray, self.t, self.parts
        bands, rows = near_dup._candidate_bands(step.threshold, step.num_perm)
        params = {
            "num_perm": step.num_perm,
            "ngram": step.ngram,
            "unit": step.unit,
            "seed": step.seed,
            "threshold": step.threshold,
            "bands": bands,
            "rows": rows,
        }
        reduced = [
            t["norm_reduce"].options(num_returns=3 + parts).remote(params, parts, *part)
            for part in self.shuffle(t["norm_map"], alive, step.key)
        ]
        sides = [r[0] for r in reduced]
        edges = ray.get([r[1] for r in reduced])
        pairs = ray.get([t["bucket_pairs"].remote(*[r[3 + q] for r in reduced]) for q in range(parts)])
        ci, cj = _unique_pairs(
            np.concatenate([p[0] for p in pairs] + [np.zeros(0, np.int64)]),
            np.concatenate([p[1] for p in pairs] + [np.zeros(0, np.int64)]),
        )
        # which partition holds each signature: its text's partition
        owners = ray.get([_first_of.remote(s) for s in sides])
        owner_idx = np.concatenate([o for o in owners] + [np.zeros(0, np.int64)])
        owner_part = np.concatenate(
            [np.full(len(o), p) for p, o in enumerate(owners)] + [np.zeros(0, np.int64)]
        )
        order = np.argsort(owner_idx)
        owner_idx, owner_part = owner_idx[order], owner_part[order]
        pi = owner_part[np.searchsorted(owner_idx, ci)] if len(ci) else ci
        pj = owner_part[np.searchsorted(owner_idx, cj)] if len(cj) else cj
        verified = []
        for a in range(parts):
            for b in range(a, parts):
                sel = np.flatnonzero(((pi == a) & (pj == b)) | ((pi == b) & (pj == a)))
                if len(sel):
                    side_refs = [sides[a]] if a == b else [sides[a], sides[b]]
                    verified.append(t["verify"].remote(params, ci[sel], cj[sel], *side_refs))
        merged = ray.get(verified)
        i = np.concatenate([e[0] for e in edges] + [m[0] for m in merged] + [np.zeros(0, np.int64)])
        j = np.concatenate([e[1] for e in edges] + [m[1] for m in merged] + [np.zeros(0, np.int64)])
        nodes = np.unique(np.concatenate([i, j]))
        labels = nodes[near_dup._components(len(nodes), np.searchsorted(nodes, i), np.searchsorted(nodes, j))]
        wanted = np.unique(labels)
        wanted_ref = ray.put(wanted)
        rep_ids: dict[int, str] = {}
        for got in ray.get([t["ids_of"].remote(r[2], wanted_ref) for r in reduced]):
            rep_ids.update(got)
        labels_ref = ray.put((nodes, labels, rep_ids))
        return self.map_blocks(alive, _mark_clusters, step=step, stepno=stepno, labels_ref=labels_ref)

    def split(self, alive: list[Any]) -> tuple[Any, int]:
        """The test/val units (the local assignment, from the unit table) and the record count."""
        cfg = self.cfg.split
        tables = self.ray.get([self.t["unit_rows"].remote(r, cfg.by_cluster, cfg.stratify) for r in alive])
        table = pa.concat_tables(tables) if tables else pa.table({"idx": [], "unit": [], "stratum": []})
        table = table.take(pc.sort_indices(table, sort_keys=[("idx", "ascending")]))
        units: dict[str, list[Any]] = {}
        for unit, stratum in zip(table["unit"].to_pylist(), table["stratum"].to_pylist(), strict=True):
            if unit in units:
                units[unit][1] += 1
            else:
                units[unit] = [unit, 1, stratum]
        assignment = unit_assignment([tuple(u) for u in units.values()], len(table), cfg)
        return self.ray.put(assignment), len(table)


def _remote_helpers() -> None:
    import ray

    global _num_rows, _first_of, _read_errors, _concat, _column, _range_map, _range_reduce
    _num_rows = ray.remote(lambda t: t.num_rows)
    _column = ray.remote(lambda t, key: t[key].to_numpy())

    @ray.remote(max_retries=RETRIES)
    def _range_map(t: pa.Table, key: str, bounds: np.ndarray) -> Any:
        part = np.searchsorted(bounds, t[key].to_numpy(), side="right")
        out = [t.filter(pa.array(part == p)) for p in range(len(bounds) + 1)]
        return out if len(out) > 1 else out[0]

    @ray.remote(max_retries=RETRIES)
    def _range_reduce(key: str, *tables: pa.Table) -> pa.Table:
        t = pa.concat_tables(tables)
        return t.take(pc.sort_indices(t, sort_keys=[(key, "ascending")]))

    _concat = ray.remote(max_retries=RETRIES)(lambda *tables: pa.concat_tables(tables))
    _first_of = ray.remote(lambda side: side[0])
    _read_errors = ray.remote(
        lambda t: [
            (i, e)
            for i, no, e in zip(*(t[c].to_pylist() for c in ("idx", "stepno", "rej")), strict=True)
            if no == ERROR
        ]
    )


_num_rows: Any = None
_first_of: Any = None
_read_errors: Any = None
_concat: Any = None
_column: Any = None
_range_map: Any = None
_range_reduce: Any = None


def _original(e: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (RayTaskError, Ray Data's UserCodeException), so a bad
    record raises here what it raises in the local engine; ``e`` itself when there is none."""
    from ray.exceptions import RayTaskError

    queue, seen = [e], set()
    while queue:
        x = queue.pop(0)
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, RayTaskError):
            queue.append(x.cause)
        elif not type(x).__module__.startswith("ray"):
            # Ray Data appends its retry advice to the message; the local engine's message is the one
            if x.args and isinstance(x.args[0], str) and "\nFailed to apply UDF" in x.args[0]:
                x.args = (x.args[0].split("\nFailed to apply UDF", 1)[0], *x.args[1:])
            return x
        queue.append(x.__cause__)
    return e


def _writers(stage: Path, cfg: CurateConfig) -> tuple[dict[str, Any], bool]:
    """Open split files for streaming when the container allows it byte for byte (.jsonl); else None
    (the split's records are gathered and written at the end by write_records: not streaming)."""
    streaming = cfg.output_suffix == ".jsonl" and get_format(cfg.output_format).container != "text"
    if not streaming:
        return {s: [] for s in SPLITS}, False
    return {
        s: open(stage / f"{s}{cfg.output_suffix}", "w", encoding="utf-8", newline="") for s in SPLITS
    }, True


def curate_ray(inputs: list[str | Path], out_dir: str | Path, cfg: CurateConfig) -> CurateResult:
    """Curate on Ray (see the module docstring); ``cfg.address`` joins a cluster, None starts one."""
    try:
        import ray
    except ImportError:
        raise StepConfigError("{key} ray needs Ray: pip install 'instructkit[ray]'", key="engine") from None
    local_out = _local_path(out_dir)
    if local_out is None:
        raise OutputError(
            f"the output {out_dir}: engine ray writes to a local or shared (mounted) folder, or a file:// URL; "
            "copy the folder to object storage after (it has no atomic rename)"
        )
    out_dir = local_out
    recover_folder(out_dir)
    check_output_folder([p for p in inputs if _local_path(p) is not None], out_dir)
    for p in inputs:
        lp = _local_path(p)
        if lp is not None and not lp.exists():
            raise FileNotFoundError(f"{lp}: no such file")
    started = False
    if not ray.is_initialized():
        ray.init(address=cfg.address or "local", include_dashboard=False, log_to_driver=False)
        started = True
    try:
        _remote_helpers()
        return _run(ray, [str(p) for p in inputs], out_dir, cfg)
    except Exception as e:
        orig = _original(e)
        if orig is not e:
            raise orig from None
        raise
    finally:
        if started:
            ray.shutdown()


def _run(ray: Any, inputs: list[str], out_dir: Path, cfg: CurateConfig) -> CurateResult:
    steps = cfg.build_steps()
    if len(inputs) >= 1 << (58 - FILE_SHIFT) or len(steps) > 28:  # what the int64 order keys can hold
        raise StepConfigError(
            f"{{key}} ray takes up to {(1 << (58 - FILE_SHIFT)) - 1} input files and 28 steps", key="engine"
        )
    # a step's own exception (a RecordError naming file and line, StepFailed naming step and record)
    # reaches the driver as itself, not as Ray Data's UserCodeException text
    ray.data.DataContext.get_current().raise_original_map_exception = True
    parts = max(2, int(ray.cluster_resources().get("CPU", 1)))
    eng = _Engine(cfg, parts, progress=os.environ.get("INSTRUCTKIT_QUIET") != "1")
    t0 = time.perf_counter()
    alive = eng.read(inputs)
    if cfg.on_error == "raise":
        errors = [e for got in ray.get([_read_errors.remote(d) for d in eng.done]) for e in got]
        if errors:
            raise RecordError(**json.loads(min(errors)[1]))
    n = eng.count(alive)
    eng.log("read", n, t0)
    # shuffle partitions: at least one per CPU, and more as the input grows, so a reduce task holds about
    # PARTITION_ROWS records whatever the input's size (memory per worker stays flat)
    eng.parts = max(parts, -(-n // PARTITION_ROWS))
    k = 0
    while k < len(steps):
        t0 = time.perf_counter()
        step = steps[k]
        if isinstance(step, Filter | Mapper):
            run = k
            while run < len(steps) and isinstance(steps[run], Filter | Mapper):
                run += 1
            alive = eng.per_record(alive, steps[k:run], list(range(k + 1, run + 1)))
            name, k = "+".join(s.name for s in steps[k:run]), run
        elif isinstance(step, ExactDedup):
            alive, name, k = eng.exact_dedup(alive, step, k + 1), step.name, k + 1
        elif isinstance(step, NearDedup):
            alive, name, k = eng.near_dedup(alive, step, k + 1), step.name, k + 1
        elif isinstance(step, DatasetStep):
            raise StepConfigError(
                f"step '{step.name}' sees the whole dataset and has no Ray form yet; run it with {{key}} local",
                key="engine",
            )
        else:  # pragma: no cover
            raise TypeError(f"step {step.name} is neither a Filter, a Mapper nor a DatasetStep")
        n_in, n = n, eng.count(alive)  # the count waits for the stage's tasks: the time is the stage's
        eng.log(name, n_in, t0)
    t0 = time.perf_counter()
    assignment_ref, n_kept = eng.split(alive)
    eng.log("split", n_kept, t0)

    # the end: rejects by (step, idx), records by idx, streamed through here into the files
    t0 = time.perf_counter()
    sources: list[dict[str, Any]] = []
    reports = [StepReport(s.name, s.params()) for s in steps]
    read_dropped: Counter = Counter()
    by_reason: Counter = Counter()
    summaries = {s: Summary() for s in SPLITS}
    with replaced_folder(out_dir) as stage:
        with open(stage / "rejects.jsonl", "w", encoding="utf-8", newline="") as rej_file:
            if eng.done:
                order = [eng.t["order_key"].remote(d) for d in eng.done]
                for batch in eng.in_order(order, "order"):
                    for stepno, reason, line in zip(
                        *(batch[c].to_pylist() for c in ("stepno", "reason", "rej")), strict=True
                    ):
                        if stepno == SOURCE:
                            sources.append(json.loads(line))
                            continue
                        rej_file.write(line + "\n")
                        by_reason[reason] += 1
                        if stepno == 0:
                            read_dropped[reason] += 1
                        else:
                            reports[stepno - 1].dropped[reason] += 1
        writers, streaming = _writers(stage, cfg)
        fmt = get_format(cfg.output_format)
        counts = dict.fromkeys(SPLITS, 0)
        try:
            if alive:
                ds = eng.data(alive).map_batches(
                    _add_split,
                    batch_format="pyarrow",
                    batch_size=1000,
                    fn_kwargs={"by_cluster": cfg.split.by_cluster, "assignment_ref": assignment_ref},
                    max_retries=RETRIES,
                )
                for batch in eng.in_order(eng.coalesce(ds.to_arrow_refs()), "idx"):
                    for text, split in zip(batch["rec"].to_pylist(), batch["split"].to_pylist(), strict=True):
                        rec = _loads(text)
                        summaries[split].add(rec)
                        if streaming:
                            _write_one(writers[split], fmt, rec, counts[split])
                        else:
                            writers[split].append(rec)
                        counts[split] += 1
        finally:
            if streaming:
                for f in writers.values():
                    f.close()
        if not streaming:
            for s in SPLITS:
                write_records(writers[s], stage / f"{s}{cfg.output_suffix}", cfg.output_format)
        read_total = sum(s["read"] for s in sources)
        reports_in = read_total - sum(read_dropped.values())
        for r in reports:
            r.n_in = reports_in
            r.kept = reports_in - sum(r.dropped.values())
            reports_in = r.kept
        card = build_card(
            cfg,
            sources,  # in input order: their rows sort by (SOURCE, file number)
            read_kept=read_total - sum(read_dropped.values()),
            read_dropped=read_dropped,
            reports=reports,
            stats={s: summaries[s].to_dict() for s in SPLITS},
            rejected_by_reason=by_reason,
        )
        from instructkit.data.card import render_card_md
        from instructkit.formats.io import write_text

        write_text(json.dumps(card, indent=2, ensure_ascii=False, sort_keys=True) + "\n", stage / "card.json")
        write_text(render_card_md(card), stage / "card.md")
    eng.log("write", n_kept + sum(by_reason.values()), t0)
    return CurateResult(out_dir, card, None, None)


def _write_one(f: Any, fmt: Any, rec: Record, index: int) -> None:
    """One record as ``write_records`` writes it in a .jsonl (the same row, the same error)."""
    try:
        rows = fmt.dump([rec])
    except RecordError as e:
        raise e.located(file=rec.meta.get("source"), index=index) from None
    for row in rows:
        f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
