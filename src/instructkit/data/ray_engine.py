"""The Ray engine of ``instructkit data curate``: the same step objects, the same decisions, on a Ray cluster.

``curate(..., CurateConfig(engine="ray"))`` writes byte-identical train/val/test/rejects files and the
same card counts as the local engine. Every record carries ``idx``, its place in the input (input file
number << 40 | position in the file), so "first" and "input order" mean what they mean locally wherever
the record travels. The driver holds counts, the merged near-duplicate pairs (a few bytes per
near-duplicate) and, during the split only, a compact unit table (28 bytes per kept record); for outputs
other than plain .jsonl, also the split being written. Its memory is flat in the input's size otherwise
(measured: a peak of 158 MiB private at 100,000 records and 159 MiB at 300,000).

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
  pairs as locally, bucket members in ``idx`` order), each pair routed by the text partitions of its two
  ends; (3) one task per pair of text partitions verifies its pairs where both signatures are
  (``_agreement_ok`` then exact Jaccard, ``_exact_jaccard_ok``): candidate pairs (~80 to 120 per text)
  never reach the driver; (4) connected components of the merged pairs on the driver (``_components``;
  a cluster's label is its smallest ``idx``, i.e. the record the local engine keeps); each block then
  gets its own records' labels only.
* split: a compact unit table (record, 128-bit unit hash, stratum) goes to the driver, which computes
  the order of :func:`unit_assignment` with numpy; workers get two hash bounds per stratum (and, by
  name, the rare units whose records are in several strata) and tag each record.
* write: a range partition on ``idx`` (exact quantiles; each partition sorted in a task), streamed through
  the driver into the split files one partition at a time; the rejects likewise by ``(step, idx)``.

Hand-written parts, and why: Ray Data's ``groupby().map_groups`` calls Python once per group (a million
groups of one record each for dedup), and it has no join for "fetch both signatures of a candidate pair",
so the shuffles here are Ray tasks with ``num_returns`` (a map side that partitions, a reduce side that
concatenates; Ray's lineage re-runs a lost task) and the components run on the driver over the merged
pairs only (a few bytes per near-duplicate, not per record). The ordered write replaces Ray Data's
``sort``, whose driver memory grew with the data (see :meth:`_Engine.in_order`). The stages made of
plain tasks show a live bar each on a terminal (:class:`_StageBar`); Ray Data shows its own.
"""

from __future__ import annotations

import contextlib
import json
import math
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
from instructkit.data.split import SPLITS, _hash, _stratum, _unit_key
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
KEY_SAMPLE = 50  # the ordered write's partition bounds come from every 50th key
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


def _mark_clusters(
    batch: pa.Table, step: NearDedup, stepno: int, nodes: np.ndarray, labels: np.ndarray, reps: list[str]
) -> pa.Table:
    """near_dedup's verdicts: a record's cluster is its label's record (itself when it merged with
    nothing); the label keeps (meta.cluster = its id), the others are rejects (``action: drop``).
    ``nodes`` (sorted), their ``labels`` and the labels' ids ``reps``: this block's merged records only."""
    rows = _Rows()
    for idx, text in zip(batch["idx"].to_pylist(), batch["rec"].to_pylist(), strict=True):
        rec = _loads(text)
        pos = int(np.searchsorted(nodes, idx))
        label = int(labels[pos]) if pos < len(nodes) and nodes[pos] == idx else idx
        rep = rec.id if label == idx else reps[pos]
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
    def norm_map(t: pa.Table, key: str, blk: int, parts: int) -> list[pa.Table]:
        """Normalized texts by partition; ``blk`` (the block's number) travels with each text so the
        verdicts can go back to the block that holds the record."""
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
                "blk": pa.array(np.full(len(recs), blk, dtype=np.int32)),
            }
        )
        nonempty = np.array([bool(n) for n in norms], dtype=bool)  # empty after normalization: never merged
        out = [t.filter(pa.array(nonempty & (part == p))) for p in range(parts)]
        return out if parts > 1 else out[0]

    @ray.remote(max_retries=RETRIES)
    def norm_reduce(params: dict[str, Any], parts_out: int, me: int, *parts: pa.Table) -> list[Any]:
        """Exact-text merges, signatures and band keys of one partition's texts (partition ``me``: the
        band keys carry it, so a candidate pair knows where its two signatures live)."""
        t = pa.concat_tables(parts)
        t = t.take(pc.sort_indices(t, sort_keys=[("norm", "ascending"), ("idx", "ascending")]))
        idx = np.asarray(t["idx"], dtype=np.int64)
        blk = np.asarray(t["blk"], dtype=np.int32)
        norms = t["norm"].to_pylist()
        first = np.ones(len(norms), dtype=bool)
        first[1:] = np.array([a != b for a, b in zip(norms[1:], norms[:-1], strict=True)], dtype=bool)
        group_first = np.maximum.accumulate(np.where(first, np.arange(len(norms)), 0))
        dup = ~first
        edges = (idx[group_first[dup]], idx[dup], blk[group_first[dup]], blk[dup])
        order = np.argsort(idx[first], kind="stable")
        rep_idx = idx[first][order]
        rep_blk = blk[first][order]
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
                    me,
                )
            )
        ids = (idx, t["rid"].to_pylist())
        return [(rep_idx, rep_norm, sig, rep_blk), edges, ids, *band_parts]

    @ray.remote(max_retries=RETRIES)
    def bucket_pairs(parts: int, *band_parts: tuple[np.ndarray, np.ndarray, np.ndarray, int]) -> Any:
        """One band partition's candidate pairs, routed by where their two signatures live: output ``c``
        holds the pairs whose ends are in text partitions ``_pair_parts(parts)[c]`` (the pairs never
        pass through the driver: at ~80 candidate pairs per record they would be its largest array)."""
        band = np.concatenate([p[0] for p in band_parts])
        key = np.concatenate([p[1] for p in band_parts])
        idx = np.concatenate([p[2] for p in band_parts])
        owner = np.concatenate([np.full(len(p[2]), p[3], dtype=np.int64) for p in band_parts])
        # a pair as one int64, i * m + j over the ranks of this task's records (m of them), as the local
        # _candidate_pairs does: the pairs are this task's memory (~80 to 120 per text on the benchmark's
        # data, up to bands * 32), and one code takes 8 bytes where a pair of columns took 16 and lexsort
        ranks, first = np.unique(idx, return_index=True)
        m = len(ranks)
        rank = np.searchsorted(ranks, idx)
        codes = [np.zeros(0, np.int64)]
        for b in np.unique(band).tolist():
            sel = np.flatnonzero(band == b)
            sel = sel[np.argsort(idx[sel], kind="stable")]
            for i, j in near_dup._bucket_pairs(key[sel], rank[sel]):
                codes.append(i * m + j)
        del band, key, rank
        code = np.concatenate(codes)
        del codes
        code.sort()
        code = code[np.r_[True, code[1:] != code[:-1]]] if len(code) else code
        ri, rj = code // m, code % m
        del code
        ci, cj = ranks[ri], ranks[rj]
        pi, pj = owner[first][ri], owner[first][rj]
        del ri, rj
        lo, hi = np.minimum(pi, pj), np.maximum(pi, pj)
        del pi, pj
        combo = lo * parts - lo * (lo - 1) // 2 + (hi - lo)  # the place of (lo, hi) in _pair_parts
        del lo, hi
        n_out = parts * (parts + 1) // 2
        by = np.argsort(combo, kind="stable")
        cuts = np.searchsorted(combo[by], np.arange(n_out + 1))
        out = [(ci[by[cuts[c] : cuts[c + 1]]], cj[by[cuts[c] : cuts[c + 1]]]) for c in range(n_out)]
        return out if n_out > 1 else out[0]

    @ray.remote(max_retries=RETRIES)
    def verify(params: dict[str, Any], n_sides: int, *args: Any) -> tuple[np.ndarray, ...]:
        """Candidate pairs whose both signatures are in the ``n_sides`` sides given (then the pair lists
        of every band partition): the local prefilter then the exact Jaccard. Returns the merged pairs
        and their records' block numbers."""
        sides, pair_lists = args[:n_sides], args[n_sides:]
        pi, pj = _unique_pairs(
            np.concatenate([p[0] for p in pair_lists] + [np.zeros(0, np.int64)]),
            np.concatenate([p[1] for p in pair_lists] + [np.zeros(0, np.int64)]),
        )
        rep_idx = np.concatenate([s[0] for s in sides])
        order = np.argsort(rep_idx, kind="stable")
        rep_idx = rep_idx[order]
        rep_blk = np.concatenate([s[3] for s in sides])[order]
        norms_all = [n for s in sides for n in s[1]]
        norms = [norms_all[k] for k in order.tolist()]
        del norms_all
        sig = np.concatenate([s[2] for s in sides])[order]
        a, b = np.searchsorted(rep_idx, pi), np.searchsorted(rep_idx, pj)
        ok = near_dup._agreement_ok(sig, a, b, params["threshold"])
        a, b, pi, pj = a[ok], b[ok], pi[ok], pj[ok]
        if len(a):
            ok = near_dup._exact_jaccard_ok(norms, a, b, params["threshold"], params["ngram"], params["unit"])
            a, b, pi, pj = a[ok], b[ok], pi[ok], pj[ok]
        return pi, pj, rep_blk[a], rep_blk[b]

    @ray.remote(max_retries=RETRIES)
    def mark(
        t: pa.Table, step: NearDedup, stepno: int, nodes: np.ndarray, labels: np.ndarray, reps: list[str]
    ) -> tuple[pa.Table, pa.Table]:
        return split_alive_local(_mark_clusters(t, step, stepno, nodes, labels, reps))

    @ray.remote(max_retries=RETRIES)
    def ids_of(ids: tuple[np.ndarray, list[str]], wanted: np.ndarray) -> dict[int, str]:
        idx, rids = ids
        hit = np.flatnonzero(np.isin(idx, wanted))
        return {int(idx[k]): rids[k] for k in hit.tolist()}

    @ray.remote(max_retries=RETRIES)
    def unit_rows(t: pa.Table, by_cluster: bool, stratify: str | None, seed: int) -> tuple[Any, ...]:
        """The split's unit table of one block, compact: per record its ``idx``, its unit's hash (the
        first 128 bits of the local engine's sha1, as two uint64) and its stratum (a code into the
        block's sorted strata)."""
        recs = [_loads(s) for s in t["rec"].to_pylist()]
        hashes = [_unit_hash(seed, _unit_key(r, by_cluster)) for r in recs]
        strata = [_stratum(r, stratify) for r in recs]
        names = sorted(set(strata))
        code = {name: c for c, name in enumerate(names)}
        return (
            np.asarray(t["idx"], dtype=np.int64),
            np.array([int(h[:16], 16) for h in hashes], dtype=np.uint64),
            np.array([int(h[16:], 16) for h in hashes], dtype=np.uint64),
            np.array([code[s] for s in strata], dtype=np.int32),
            names,
        )

    tasks = {k: v for k, v in locals().items() if hasattr(v, "remote")}
    _BROADCAST["tasks"] = tasks
    return tasks


def split_alive_local(t: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Records still in the pipeline, and the finished rows (rejects, source summaries, read errors)."""
    alive = pc.equal(t["stepno"], ALIVE)
    return t.filter(alive), t.filter(pc.invert(alive))


def _pair_parts(parts: int) -> list[tuple[int, int]]:
    """The pairs ``(a, b)``, ``a <= b``, of text partitions, in the order ``bucket_pairs`` returns them."""
    return [(a, b) for a in range(parts) for b in range(a, parts)]


def _unique_pairs(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(i):
        return i, j
    order = np.lexsort((j, i))
    i, j = i[order], j[order]
    keep = np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1])]
    return i[keep], j[keep]


def _unit_hash(seed: int, key: str) -> str:
    """The first 128 bits (32 hex digits) of the hash ``unit_assignment`` orders units by. Two distinct
    units sharing them (odds ~n^2 / 2^129) would be taken for one."""
    return _hash(seed, key)[:32]


def _add_split(
    batch: pa.Table, by_cluster: bool, stratify: str | None, seed: int, assignment_ref: Any
) -> pa.Table:
    """Each record's split from the assignment's bounds: in its unit's stratum, a unit whose hash is
    below the test bound is test, below the val bound val, else train (see ``_Engine.split``)."""
    bounds, mixed = _fetch(assignment_ref)
    out = []
    for text in batch["rec"].to_pylist():
        rec = _loads(text)
        h = _unit_hash(seed, _unit_key(rec, by_cluster))
        if h in mixed:
            out.append(mixed[h])
            continue
        test, val = bounds[_stratum(rec, stratify)]
        out.append("test" if h < test else "val" if h < val else "train")
    return batch.append_column("split", pa.array(out, pa.string()))


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


class _StageBar:
    """A live bar for one stage on a terminal (rich, as the rest of the project's bars): the stage's Ray
    tasks done out of those submitted so far, and records/s across the cluster, estimated as the stage's
    input records times the share of its tasks done, over the time since the stage began.

    Hand-written because these stages are plain Ray tasks, which have no bar of their own (Ray Data's
    operators do, and show them). A thread polls ``ray.wait`` (no fetch) four times a second, so the
    driver's own waits need not know about the bar. Off a terminal, and with INSTRUCTKIT_QUIET=1, there
    is no bar and no thread: only the one line per stage."""

    def __init__(self, ray: Any, name: str, n_in: int) -> None:
        import threading

        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.ray, self.n_in = ray, n_in
        self.refs: dict[Any, None] = {}  # insertion-ordered set: ray.wait refuses repeated refs
        self.lock = threading.Lock()
        self.t0 = time.perf_counter()
        self.bar = Progress(
            TextColumn(f"[bold]{name}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} tasks"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.bar.add_task(name, total=0, rate="")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.bar.start()
        self.thread.start()

    def add(self, refs: list[Any]) -> None:
        with self.lock:
            for r in refs:
                self.refs[r[0] if isinstance(r, list) else r] = None

    def poll(self) -> None:
        while not self.stop.wait(0.25):
            with self.lock:
                refs = list(self.refs)
            if not refs:
                continue
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
            rate = ""
            if self.n_in:
                records = self.n_in * len(ready) / len(refs)
                rate = f"~{records / max(time.perf_counter() - self.t0, 1e-9):,.0f} records/s"
            self.bar.update(self.task, total=len(refs), completed=len(ready), rate=rate)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.bar.stop()


class _Engine:
    def __init__(self, cfg: CurateConfig, parts: int, progress: bool) -> None:
        import ray

        self.ray = ray
        self.cfg = cfg
        self.parts = parts
        self.progress = progress
        self.t = _tasks()
        self.done: list[Any] = []  # refs of reject and source rows
        self.settled = 0  # self.done[:settled] are merged blocks (see settle)
        self.bar: _StageBar | None = None

    @contextlib.contextmanager
    def stage(self, name: str, n_in: int) -> Iterator[None]:
        """A live bar for the stage (on a terminal only; see _StageBar)."""
        if not (self.progress and sys.stderr.isatty()):
            yield
            return
        self.bar = _StageBar(self.ray, name, n_in)
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
                f"{_driver_memory()}",
                file=sys.stderr,
            )

    def settle(self, group: int = 64) -> None:
        """Merge the reject blocks a stage left (one per task) into blocks of ``group``. A task's result
        under 100 KB (Ray's ``max_direct_call_object_size``) is stored in its owner's heap, here the
        driver's, and a stage's rejects are mostly such small blocks: kept as they come they made the
        driver grow with the input. Merged, they live in the object store (spilled to disk if need be)."""
        new = self.done[self.settled :]
        merged = [_concat.remote(*new[s : s + group]) for s in range(0, len(new), group)]
        self.done[self.settled :] = merged
        self.settled = len(self.done)

    def keep_alive(self, refs: list[Any]) -> list[Any]:
        """Split blocks into records still in (returned) and finished rows (kept for the end)."""
        alive = []
        for ref in refs:
            a, d = self.t["split_alive"].options(num_returns=2).remote(ref)
            alive.append(a)
            self.done.append(d)
        return self.track(alive)

    def count(self, refs: list[Any]) -> int:
        return sum(self.ray.get([_num_rows.remote(r) for r in refs])) if refs else 0

    def data(self, refs: list[Any]) -> Any:
        return self.ray.data.from_arrow_refs(refs)

    def in_order(self, refs: list[Any], key: str) -> Iterator[pa.Table]:
        """The rows of ``refs`` sorted by the int64 column ``key``, one range partition at a time.

        Hand-written instead of Ray Data's ``sort``: measured here, its driver kept memory that grew with
        the data (+1.6 GiB at 500,000 records), where this one holds one partition (~PARTITION_ROWS rows,
        read zero-copy from the object store) at a time. The boundaries are quantiles of a sample of the
        keys (every KEY_SAMPLE-th of each block, sorted), so the driver holds 8 bytes per KEY_SAMPLE rows
        and a partition holds PARTITION_ROWS rows give or take a few KEY_SAMPLE per block."""
        refs = [r for r, n in zip(refs, self.ray.get([_num_rows.remote(r) for r in refs]), strict=True) if n]
        if not refs:
            return
        keys = np.sort(np.concatenate(self.ray.get([_key_sample.remote(r, key) for r in refs])))
        bounds = np.unique(keys[PARTITION_ROWS // KEY_SAMPLE :: PARTITION_ROWS // KEY_SAMPLE])
        parts = len(bounds) + 1
        del keys
        maps = self.track([_range_map.options(num_returns=parts).remote(r, key, bounds) for r in refs])
        if parts == 1:
            maps = [[m] for m in maps]
        reduced = self.track([_range_reduce.remote(key, *[m[p] for m in maps]) for p in range(parts)])
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
        maps = self.track([mapper.options(num_returns=self.parts).remote(r, *args, self.parts) for r in refs])
        if self.parts == 1:
            maps = [[m] for m in maps]
        return [[m[p] for m in maps] for p in range(self.parts)]

    def exact_dedup(self, alive: list[Any], step: ExactDedup, stepno: int) -> list[Any]:
        out = []
        for part in self.shuffle(self.t["exact_map"], alive, step.key):
            a, d = self.t["exact_reduce"].options(num_returns=2).remote(step.name, stepno, *part)
            out.append(a)
            self.done.append(d)
        return self.track(out)

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
        maps = [
            t["norm_map"].options(num_returns=parts).remote(r, step.key, k, parts)
            for k, r in enumerate(alive)
        ]
        if parts == 1:
            maps = [[m] for m in maps]
        self.track(maps)
        reduced = [
            t["norm_reduce"].options(num_returns=3 + parts).remote(params, parts, p, *[m[p] for m in maps])
            for p in range(parts)
        ]
        del maps
        self.track(reduced)
        sides = [r[0] for r in reduced]
        combos = _pair_parts(parts)
        routed = [
            t["bucket_pairs"].options(num_returns=len(combos)).remote(parts, *[r[3 + q] for r in reduced])
            for q in range(parts)
        ]
        if len(combos) == 1:
            routed = [[x] for x in routed]
        self.track(routed)
        verified = [
            t["verify"].remote(
                params,
                1 if a == b else 2,
                *([sides[a]] if a == b else [sides[a], sides[b]]),
                *[x[c] for x in routed],
            )
            for c, (a, b) in enumerate(combos)
        ]
        del routed
        self.track(verified)
        # the driver holds the merged pairs only: a few bytes per near-duplicate, not per record
        merged = self.ray.get([r[1] for r in reduced]) + self.ray.get(verified)
        del verified, sides
        i = np.concatenate([m[0] for m in merged] + [np.zeros(0, np.int64)])
        j = np.concatenate([m[1] for m in merged] + [np.zeros(0, np.int64)])
        blk = np.concatenate([m[2] for m in merged] + [m[3] for m in merged] + [np.zeros(0, np.int32)])
        del merged
        nodes, first = np.unique(np.concatenate([i, j]), return_index=True)
        node_blk = blk[first]
        labels = nodes[near_dup._components(len(nodes), np.searchsorted(nodes, i), np.searchsorted(nodes, j))]
        del i, j, blk, first
        wanted_ref = ray.put(np.unique(labels))
        rep_ids: dict[int, str] = {}
        for got in ray.get([t["ids_of"].remote(r[2], wanted_ref) for r in reduced]):
            rep_ids.update(got)
        del reduced
        out = []
        for k, ref in enumerate(alive):  # each block gets its own records' verdicts only
            sel = np.flatnonzero(node_blk == k)
            reps = [rep_ids[x] for x in labels[sel].tolist()]
            a, d = t["mark"].options(num_returns=2).remote(ref, step, stepno, nodes[sel], labels[sel], reps)
            out.append(a)
            self.done.append(d)
        return self.track(out)

    def split(self, alive: list[Any]) -> tuple[Any, int]:
        """The local engine's assignment, as bounds the workers apply; and the record count.

        ``unit_assignment`` orders units within a stratum by hash, interleaves the strata by relative
        rank, and fills test then val from the front of that order. Here the same order is computed with
        numpy over a compact unit table (28 bytes per kept record, held during this stage only, instead
        of the unit keys' strings: ~100 bytes a record plus a dict), so the test units of a stratum are
        those of hash below one bound and the val units those below a second: the workers get two
        strings per stratum instead of a map of every test/val unit. A unit whose records are in
        several strata (by_cluster with near_dedup's ``action: mark``) takes its first record's stratum
        locally; those few units are sent by name."""
        cfg = self.cfg.split
        got = self.ray.get(
            self.track([self.t["unit_rows"].remote(r, cfg.by_cluster, cfg.stratify, cfg.seed) for r in alive])
        )
        names = sorted({n for g in got for n in g[4]})
        where = {n: c for c, n in enumerate(names)}
        cols = [np.concatenate([g[k] for g in got] + [np.zeros(0, g0)]) for k, g0 in enumerate(_UNIT_DTYPES)]
        cols[3] = np.concatenate(
            [np.array([where[n] for n in g[4]], dtype=np.int32)[g[3]] for g in got] + [np.zeros(0, np.int32)]
        )
        del got
        idx, hi, lo, code = cols
        del cols
        total = len(idx)
        if not total:
            return self.ray.put(({}, {})), 0
        order = np.argsort(idx, kind="stable")
        hi, lo, code = hi[order], lo[order], code[order]
        del idx, order
        # units: records grouped by hash, in hash order; a unit's stratum is its first record's
        order = np.lexsort((lo, hi))  # stable: a unit's records stay in input order
        hi, lo, code = hi[order], lo[order], code[order]
        del order
        start = np.flatnonzero(np.r_[True, (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])])
        size = np.diff(np.r_[start, total])
        unit_code = code[start]
        mixed_unit = np.zeros(len(start), dtype=bool)
        differ = np.flatnonzero(code != np.repeat(unit_code, size))
        mixed_unit[np.searchsorted(start, differ, side="right") - 1] = True
        u_hi, u_lo = hi[start], lo[start]
        del hi, lo, code
        # rank within the stratum (units are in hash order), then the local engine's global order
        by_stratum = np.argsort(unit_code, kind="stable")
        n_s = np.bincount(unit_code, minlength=len(names))
        first_of = np.r_[0, np.cumsum(n_s)[:-1]]
        rank = np.empty(len(start), dtype=np.int64)
        rank[by_stratum] = np.arange(len(start)) - first_of[unit_code[by_stratum]]
        pos = (rank + 0.5) / n_s[unit_code]
        glob = np.lexsort((u_lo, u_hi, pos))
        before = np.cumsum(size[glob]) - size[glob]  # records placed before each unit, in that order
        want = {"test": math.floor(total * cfg.test + 0.5), "val": math.floor(total * cfg.val + 0.5)}
        split = np.zeros(len(start), dtype=np.int8)  # 0 train, 1 test, 2 val
        n_test = int(np.count_nonzero(before < want["test"]))
        split[glob[:n_test]] = 1
        base = before[n_test] if n_test < len(glob) else 0
        n_val = int(np.count_nonzero(before[n_test:] - base < want["val"]))
        split[glob[n_test : n_test + n_val]] = 2
        # per stratum: test = rank < (its test units), val = rank < (its test and val units)
        bounds = {}
        for c, name in enumerate(names):
            members = by_stratum[first_of[c] : first_of[c] + n_s[c]]  # this stratum's units, by rank
            a = int(np.count_nonzero(split[members] == 1))
            b = a + int(np.count_nonzero(split[members] == 2))
            bounds[name] = tuple(
                _hex128(u_hi[members[k]], u_lo[members[k]]) if k < len(members) else "~" for k in (a, b)
            )
        names_of = {0: "train", 1: "test", 2: "val"}
        mixed = {
            _hex128(u_hi[u], u_lo[u]): names_of[int(split[u])] for u in np.flatnonzero(mixed_unit).tolist()
        }
        return self.ray.put((bounds, mixed)), total


_UNIT_DTYPES = (np.int64, np.uint64, np.uint64, np.int32)


def _hex128(hi: Any, lo: Any) -> str:
    """The 32 hex digits of a unit hash held as two uint64 ("~" sorts after every one of them)."""
    return f"{int(hi):016x}{int(lo):016x}"


def _remote_helpers() -> None:
    import ray

    global _num_rows, _read_errors, _concat, _key_sample, _range_map, _range_reduce
    _num_rows = ray.remote(lambda t: t.num_rows)
    _key_sample = ray.remote(lambda t, key: np.sort(t[key].to_numpy())[::KEY_SAMPLE])

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
    _read_errors = ray.remote(
        lambda t: [
            (i, e)
            for i, no, e in zip(*(t[c].to_pylist() for c in ("idx", "stepno", "rej")), strict=True)
            if no == ERROR
        ]
    )


_num_rows: Any = None
_read_errors: Any = None
_concat: Any = None
_key_sample: Any = None
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
    with contextlib.ExitStack() as stack:
        if not ray.is_initialized():
            if cfg.address is None:
                stack.enter_context(run_token())
            ray.init(address=cfg.address or "local", include_dashboard=False, log_to_driver=False)
            stack.callback(ray.shutdown)  # before run_token restores the environment
        try:
            _remote_helpers()
            return _run(ray, [str(p) for p in inputs], out_dir, cfg)
        except Exception as e:
            orig = _original(e)
            if orig is not e:
                raise orig from None
            raise


AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@contextlib.contextmanager
def run_token() -> Iterator[None]:
    """Token authentication for a local cluster started for one run, with a fresh token that lives in this
    process's environment (inherited by the cluster's processes) and nowhere on disk; the environment is
    restored after.

    Without it, Ray (2.60 here) turns token authentication on for a new local cluster and, finding no
    token, writes one to ``~/.ray/auth_token`` for good. Every later ``ray start --head`` on the machine
    then finds that file and requires the token, while ``ray start --address`` does not send it: the
    user's own cluster fails to join with InvalidAuthToken until the file is deleted.
    ``RAY_AUTH_MODE=disabled`` set by the user is kept (no token then); ``RAY_AUTH_TOKEN_PATH`` is set
    aside for the run (Ray writes the default path, not that one, when its file is missing)."""
    import secrets

    saved = {k: os.environ.get(k) for k in AUTH_ENV}
    if (saved["RAY_AUTH_MODE"] or "").lower() != "disabled":
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    _reload_auth()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reload_auth()


def _reload_auth() -> None:
    """Make this process's Ray read the authentication settings from the environment again (its config
    and its token are cached); a Ray without token authentication has nothing to reload."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


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
    with eng.stage("read", 0):
        alive = eng.read(inputs)
        if cfg.on_error == "raise":
            errors = [e for got in ray.get([_read_errors.remote(d) for d in eng.done]) for e in got]
            if errors:
                raise RecordError(**json.loads(min(errors)[1]))
        n = eng.count(alive)
    eng.log("read", n, t0)
    eng.settle()
    # shuffle partitions: at least one per CPU, and more as the input grows, so a reduce task holds about
    # PARTITION_ROWS records whatever the input's size (memory per worker stays flat)
    eng.parts = max(parts, -(-n // PARTITION_ROWS))
    k = 0
    while k < len(steps) and n:  # with no record left the steps see nothing and drop nothing, as locally
        t0 = time.perf_counter()
        step, run = steps[k], k + 1
        if isinstance(step, Filter | Mapper):  # consecutive per-record steps run as one map
            while run < len(steps) and isinstance(steps[run], Filter | Mapper):
                run += 1
        elif isinstance(step, DatasetStep) and not isinstance(step, ExactDedup | NearDedup):
            raise StepConfigError(
                f"step '{step.name}' sees the whole dataset and has no Ray form yet; run it with {{key}} local",
                key="engine",
            )
        elif not isinstance(step, ExactDedup | NearDedup):  # pragma: no cover
            raise TypeError(f"step {step.name} is neither a Filter, a Mapper nor a DatasetStep")
        name = "+".join(s.name for s in steps[k:run])
        with eng.stage(name, n):
            if isinstance(step, ExactDedup):
                alive = eng.exact_dedup(alive, step, k + 1)
            elif isinstance(step, NearDedup):
                alive = eng.near_dedup(alive, step, k + 1)
            else:
                alive = eng.per_record(alive, steps[k:run], list(range(k + 1, run + 1)))
            n_in, n = n, eng.count(alive)  # the count waits for the stage's tasks: the time is the stage's
        k = run
        eng.log(name, n_in, t0)
        eng.settle()
    if not n:
        alive = []  # (Ray Data gives empty blocks without a schema back from a map over no rows)
    t0 = time.perf_counter()
    with eng.stage("split", n):
        assignment_ref, n_kept = eng.split(alive)
    eng.log("split", n_kept, t0)

    # the end: rejects by (step, idx), records by idx, streamed through here into the files
    t0 = time.perf_counter()
    sources: list[dict[str, Any]] = []
    reports = [StepReport(s.name, s.params()) for s in steps]
    read_dropped: Counter = Counter()
    by_reason: Counter = Counter()
    summaries = {s: Summary() for s in SPLITS}
    with eng.stage("write", n_kept), replaced_folder(out_dir) as stage:
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
                    fn_kwargs={
                        "by_cluster": cfg.split.by_cluster,
                        "stratify": cfg.split.stratify,
                        "seed": cfg.split.seed,
                        "assignment_ref": assignment_ref,
                    },
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
