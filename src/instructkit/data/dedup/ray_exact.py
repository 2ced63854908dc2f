"""exact_dedup on the Ray engine: a hash shuffle on the key's normalized hash; each partition keeps the
smallest ``idx`` of each hash (the record the local step keeps: the first in input order)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from instructkit.data.dedup.keys import dedup_key, normalized_hash
from instructkit.data.engines.accounting import load_record, reject_row
from instructkit.data.engines.ray.blocks import Rows, line, remote, split_alive


def exact_map(t: pa.Table, key: str, parts: int) -> list[pa.Table]:
    recs = [load_record(s) for s in t["rec"].to_pylist()]
    hashes = [normalized_hash(dedup_key(r, key)) for r in recs]
    part = np.array([int(h[:15], 16) % parts for h in hashes], dtype=np.int64)
    t = t.append_column("h", pa.array(hashes, pa.string())).append_column(
        "rid", pa.array([r.id for r in recs], pa.string())
    )
    out = [t.filter(pa.array(part == p)) for p in range(parts)]
    return out if parts > 1 else out[0]


def exact_reduce(name: str, stepno: int, *parts: pa.Table) -> tuple[pa.Table, pa.Table]:
    t = pa.concat_tables(parts)
    t = t.take(pc.sort_indices(t, sort_keys=[("h", "ascending"), ("idx", "ascending")]))
    rows, first_h, first_id = Rows(), None, ""
    for idx, text, h, rid in zip(*(t[c].to_pylist() for c in ("idx", "rec", "h", "rid")), strict=True):
        if h != first_h:
            first_h, first_id = h, rid
            rows.add(idx, text)
        else:
            detail = f"duplicate of {first_id}"
            reject = reject_row(name, "exact_duplicate", detail, load_record(text))
            rows.add(idx, stepno=stepno, reason="exact_duplicate", rej=line(reject))
    return split_alive(rows.table())


def exact_dedup_stage(engine: Any, alive: list[Any], name: str, key: str, stepno: int) -> list[Any]:
    """The stage (``ExactDedup.ray_stage``): the blocks of records still in."""
    reduce = remote(exact_reduce).options(num_returns=2)
    out = [
        engine.keep(*reduce.remote(name, stepno, *part))
        for part in engine.shuffle(remote(exact_map), alive, key)
    ]
    return engine.track(out)
