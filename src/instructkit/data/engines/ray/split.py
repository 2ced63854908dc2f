"""The Ray engine's split: the local engine's assignment, as bounds the workers apply.

A compact unit table (per record its ``idx``, its unit hash as two uint64 and its stratum code: 28 bytes
per kept record, held during this stage only) goes to the driver, which runs the one assignment both
engines use (:func:`~instructkit.data.split.assign_units`). Units within a stratum are in hash order, so
the test units of a stratum are those of hash below one bound and the val units those below a second:
the workers get two strings per stratum instead of a map of every test/val unit, and tag each record
(:func:`add_split`). A unit whose records are in several strata (by_cluster with near_dedup's
``action: mark``) takes its first record's stratum; those few units are sent by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from instructkit.data.engines.accounting import load_record
from instructkit.data.engines.ray.blocks import fetch, remote
from instructkit.data.split import (
    CODES,
    SplitConfig,
    assign_units,
    hash_words,
    hex128,
    stratum,
    unit_hash,
    unit_key,
)

_UNIT_DTYPES = (np.int64, np.uint64, np.uint64, np.int32)


def unit_rows(t: pa.Table, by_cluster: bool, stratify: str | None, seed: int) -> tuple[Any, ...]:
    """The split's unit table of one block, compact: per record its ``idx``, its unit's hash (two uint64)
    and its stratum (a code into the block's sorted strata)."""
    recs = [load_record(s) for s in t["rec"].to_pylist()]
    hi, lo = hash_words([unit_hash(seed, unit_key(r, by_cluster)) for r in recs])
    strata = [stratum(r, stratify) for r in recs]
    names = sorted(set(strata))
    code = {name: c for c, name in enumerate(names)}
    return (
        np.asarray(t["idx"], dtype=np.int64),
        hi,
        lo,
        np.array([code[s] for s in strata], dtype=np.int32),
        names,
    )


def add_split(
    batch: pa.Table, by_cluster: bool, stratify: str | None, seed: int, assignment_ref: Any
) -> pa.Table:
    """Each record's split from the assignment's bounds: in its unit's stratum, a unit whose hash is below
    the test bound is test, below the val bound val, else train."""
    bounds, mixed = fetch(assignment_ref)
    out = []
    for text in batch["rec"].to_pylist():
        rec = load_record(text)
        h = unit_hash(seed, unit_key(rec, by_cluster))
        if h in mixed:
            out.append(mixed[h])
            continue
        test, val = bounds[stratum(rec, stratify)]
        out.append("test" if h < test else "val" if h < val else "train")
    return batch.append_column("split", pa.array(out, pa.string()))


def split_stage(engine: Any, alive: list[Any], cfg: SplitConfig) -> tuple[Any, int]:
    """The bounds (a ref of ``(bounds, mixed)`` for :func:`add_split`) and the number of records."""
    got = engine.ray.get(
        engine.track([remote(unit_rows).remote(r, cfg.by_cluster, cfg.stratify, cfg.seed) for r in alive])
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
    if not len(idx):
        return engine.ray.put(({}, {})), 0
    order = np.argsort(idx, kind="stable")  # input order
    a = assign_units(hi[order], lo[order], code[order], len(names), cfg.val, cfg.test)
    del idx, hi, lo, code, order
    # per stratum: test = rank < (its test units), val = rank < (its test and val units)
    bounds = {}
    for c, name in enumerate(names):
        members = np.flatnonzero(a.code == c)  # this stratum's units, in hash order
        n_test = int(np.count_nonzero(a.split[members] == 1))
        n_val = n_test + int(np.count_nonzero(a.split[members] == 2))
        bounds[name] = tuple(
            hex128(a.hi[members[k]], a.lo[members[k]]) if k < len(members) else "~" for k in (n_test, n_val)
        )
    mixed = {hex128(a.hi[u], a.lo[u]): CODES[int(a.split[u])] for u in np.flatnonzero(a.mixed).tolist()}
    return engine.ray.put((bounds, mixed)), len(a.unit_of)
