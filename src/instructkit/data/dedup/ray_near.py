"""near_dedup on the Ray engine: the standard distributed MinHash-LSH, on the local module's own functions.

1. Shuffle by normalized text (texts equal after normalization merge at once, as locally; only the first
   is hashed), signatures per partition (``near_dup.signatures``), one 64-bit key per band
   (``near_dup.band_key``).
2. One shuffle of ``(band, key, idx)`` so each bucket sits in one partition, windowed pairs
   (``near_dup.bucket_pairs``: the same pairs as locally, bucket members in ``idx`` order), each pair
   routed by the text partitions of its two ends.
3. One task per pair of text partitions verifies its pairs where both signatures are
   (``near_dup.verify_pairs``: the prefilter, then the exact Jaccard): candidate pairs (~80 to 120 per
   text) never reach the driver.
4. Connected components of the merged pairs on the driver (``near_dup.components``; a cluster's label is
   its smallest ``idx``, i.e. the record the local engine keeps): a few bytes per near-duplicate, not per
   record. Each block then gets its own records' labels only.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from instructkit.data.dedup import near_dup
from instructkit.data.dedup.keys import dedup_key
from instructkit.data.engines.accounting import dump_record, load_record, reject_row
from instructkit.data.engines.ray.blocks import Rows, line, remote, split_alive


def norm_map(t: pa.Table, key: str, blk: int, parts: int) -> list[pa.Table]:
    """Normalized texts by partition; ``blk`` (the block's number) travels with each text so the verdicts
    can go back to the block that holds the record."""
    recs = [load_record(s) for s in t["rec"].to_pylist()]
    norms = [near_dup.normalize_for_dedup(dedup_key(r, key)) for r in recs]
    part = np.array([zlib.crc32(n.encode("utf-8", "surrogatepass")) % parts for n in norms], dtype=np.int64)
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


def norm_reduce(params: dict[str, Any], parts_out: int, me: int, *parts: pa.Table) -> list[Any]:
    """Exact-text merges, signatures and band keys of one partition's texts (partition ``me``: the band
    keys carry it, so a candidate pair knows where its two signatures live)."""
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
    sig = near_dup.signatures(rep_norm, params["num_perm"], params["ngram"], params["unit"], params["seed"])
    bands, rows = params["bands"], params["rows"]
    keys = [near_dup.band_key(sig, b, rows) for b in range(bands)]
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


def route_pairs(parts: int, *band_parts: tuple[np.ndarray, np.ndarray, np.ndarray, int]) -> Any:
    """One band partition's candidate pairs, routed by where their two signatures live: output ``c`` holds
    the pairs whose ends are in text partitions ``pair_parts(parts)[c]`` (the pairs never pass through
    the driver: at ~80 candidate pairs per record they would be its largest array)."""
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
        for i, j in near_dup.bucket_pairs(key[sel], rank[sel]):
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
    combo = lo * parts - lo * (lo - 1) // 2 + (hi - lo)  # the place of (lo, hi) in pair_parts
    del lo, hi
    n_out = parts * (parts + 1) // 2
    by = np.argsort(combo, kind="stable")
    cuts = np.searchsorted(combo[by], np.arange(n_out + 1))
    out = [(ci[by[cuts[c] : cuts[c + 1]]], cj[by[cuts[c] : cuts[c + 1]]]) for c in range(n_out)]
    return out if n_out > 1 else out[0]


def verify(params: dict[str, Any], n_sides: int, *args: Any) -> tuple[np.ndarray, ...]:
    """Candidate pairs whose both signatures are in the ``n_sides`` sides given (then the pair lists of
    every band partition): the local prefilter then the exact Jaccard. Returns the merged pairs and their
    records' block numbers."""
    sides, pair_lists = args[:n_sides], args[n_sides:]
    pi, pj = unique_pairs(
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
    ok = near_dup.verify_pairs(sig, norms, a, b, params["threshold"], params["ngram"], params["unit"])
    a, b, pi, pj = a[ok], b[ok], pi[ok], pj[ok]
    return pi, pj, rep_blk[a], rep_blk[b]


def mark_clusters(
    batch: pa.Table, step: Any, stepno: int, nodes: np.ndarray, labels: np.ndarray, reps: list[str]
) -> tuple[pa.Table, pa.Table]:
    """near_dedup's verdicts: a record's cluster is its label's record (itself when it merged with
    nothing); the label keeps (meta.cluster = its id), the others are rejects (``action: drop``).
    ``nodes`` (sorted), their ``labels`` and the labels' ids ``reps``: this block's merged records only."""
    rows = Rows()
    for idx, text in zip(batch["idx"].to_pylist(), batch["rec"].to_pylist(), strict=True):
        rec = load_record(text)
        pos = int(np.searchsorted(nodes, idx))
        label = int(labels[pos]) if pos < len(nodes) and nodes[pos] == idx else idx
        rep = rec.id if label == idx else reps[pos]
        if label == idx or step.action == "mark":
            rec.meta.update({"cluster": rep})
            rows.add(idx, dump_record(rec))
        else:
            reject = reject_row(step.name, "near_duplicate", f"cluster of {rep}", rec)
            rows.add(idx, stepno=stepno, reason="near_duplicate", rej=line(reject))
    return split_alive(rows.table())


def ids_of(ids: tuple[np.ndarray, list[str]], wanted: np.ndarray) -> dict[int, str]:
    idx, rids = ids
    hit = np.flatnonzero(np.isin(idx, wanted))
    return {int(idx[k]): rids[k] for k in hit.tolist()}


def pair_parts(parts: int) -> list[tuple[int, int]]:
    """The pairs ``(a, b)``, ``a <= b``, of text partitions, in the order ``route_pairs`` returns them."""
    return [(a, b) for a in range(parts) for b in range(a, parts)]


def unique_pairs(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(i):
        return i, j
    order = np.lexsort((j, i))
    i, j = i[order], j[order]
    keep = np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1])]
    return i[keep], j[keep]


def _merged_pairs(engine: Any, alive: list[Any], key: str, params: dict[str, Any]) -> tuple[list, list]:
    """Steps 1 to 3: the text partitions' results (``norm_reduce``'s) and the merged pairs of each
    verify task and of each text partition's exact merges."""
    parts = engine.parts
    maps = [remote(norm_map).options(num_returns=parts).remote(r, key, k, parts) for k, r in enumerate(alive)]
    if parts == 1:
        maps = [[m] for m in maps]
    engine.track(maps)
    reduce = remote(norm_reduce).options(num_returns=3 + parts)
    reduced = [reduce.remote(params, parts, p, *[m[p] for m in maps]) for p in range(parts)]
    del maps
    engine.track(reduced)
    sides = [r[0] for r in reduced]
    combos = pair_parts(parts)
    route = remote(route_pairs).options(num_returns=len(combos))
    routed = [route.remote(parts, *[r[3 + q] for r in reduced]) for q in range(parts)]
    if len(combos) == 1:
        routed = [[x] for x in routed]
    engine.track(routed)
    verified = [
        remote(verify).remote(
            params,
            1 if a == b else 2,
            *([sides[a]] if a == b else [sides[a], sides[b]]),
            *[x[c] for x in routed],
        )
        for c, (a, b) in enumerate(combos)
    ]
    del routed
    engine.track(verified)
    # the driver holds the merged pairs only: a few bytes per near-duplicate, not per record
    return reduced, engine.ray.get([r[1] for r in reduced]) + engine.ray.get(verified)


def near_dedup_stage(engine: Any, alive: list[Any], step: Any, stepno: int) -> list[Any]:
    """The stage (``NearDedup.ray_stage``): the blocks of records still in."""
    ray = engine.ray
    bands, rows = near_dup.lsh_bands(step.threshold, step.num_perm)
    params = {
        "num_perm": step.num_perm,
        "ngram": step.ngram,
        "unit": step.unit,
        "seed": step.seed,
        "threshold": step.threshold,
        "bands": bands,
        "rows": rows,
    }
    reduced, merged = _merged_pairs(engine, alive, step.key, params)
    i = np.concatenate([m[0] for m in merged] + [np.zeros(0, np.int64)])
    j = np.concatenate([m[1] for m in merged] + [np.zeros(0, np.int64)])
    blk = np.concatenate([m[2] for m in merged] + [m[3] for m in merged] + [np.zeros(0, np.int32)])
    del merged
    nodes, first = np.unique(np.concatenate([i, j]), return_index=True)
    node_blk = blk[first]
    labels = nodes[near_dup.components(len(nodes), np.searchsorted(nodes, i), np.searchsorted(nodes, j))]
    del i, j, blk, first
    wanted_ref = ray.put(np.unique(labels))
    rep_ids: dict[int, str] = {}
    for got in ray.get([remote(ids_of).remote(r[2], wanted_ref) for r in reduced]):
        rep_ids.update(got)
    del reduced
    out = []
    mark = remote(mark_clusters).options(num_returns=2)
    for k, ref in enumerate(alive):  # each block gets its own records' verdicts only
        sel = np.flatnonzero(node_blk == k)
        reps = [rep_ids[x] for x in labels[sel].tolist()]
        out.append(engine.keep(*mark.remote(ref, step, stepno, nodes[sel], labels[sel], reps)))
    return engine.track(out)
