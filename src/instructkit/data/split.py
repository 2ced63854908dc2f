"""Deterministic, optionally stratified, cluster-aware train/val/test split.

Units are near-duplicate clusters (``meta.cluster``) when present, else single records, so paraphrases
never straddle train and test. A unit's place in the order is a hash of (seed, unit key), not of its
position: the same seed gives the same split even if the input order changes.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass

from instructkit.config import ConfigError, checked
from instructkit.records import Record

SPLITS = ("train", "val", "test")


@dataclass
class SplitConfig:
    val: float = checked(0.05, ge=0, lt=1)
    """Share of records for validation."""
    test: float = checked(0.05, ge=0, lt=1)
    """Share of records for test."""
    seed: int = 0
    """Seed of the assignment; the same seed gives byte-identical splits."""
    stratify: str | None = checked(None, choices=("task", "label"))
    """``task`` or ``label``: keep each stratum's shares close to val/test."""
    by_cluster: bool = True
    """Keep every member of a near-duplicate cluster in one split."""

    def validate(self) -> None:
        if self.val < 0 or self.test < 0 or self.val + self.test >= 1:
            raise ConfigError("{key} and test must be >= 0 and sum to less than 1", key="val")
        if self.stratify not in (None, "task", "label"):
            raise ConfigError("{key} must be task, label or null", key="stratify")


def _hash(seed: int, key: str) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def _unit_key(rec: Record, by_cluster: bool) -> str:
    if by_cluster and rec.meta.get("cluster"):
        return f"cluster:{rec.meta['cluster']}"
    return f"record:{rec.id}:{rec.content_hash()}"


def _stratum(rec: Record, stratify: str | None) -> str:
    if stratify == "task":
        return str(rec.meta.get("task") or "-")
    if stratify == "label":
        if rec.text is not None:
            return str(rec.label)
        return str(rec.meta.get("label") or rec.meta.get("task") or "-")
    return ""


def unit_assignment(units: list[tuple[str, int, str]], total: int, cfg: SplitConfig) -> dict[str, str]:
    """The split of each unit: ``units`` are ``(key, members, stratum)`` in the order of their first
    member (the stratum is that member's), ``total`` the number of records. Only units that go to test or
    val are returned (every other unit is train), so an engine that holds records elsewhere (the Ray
    engine) sends its workers a small map."""
    size = {k: n for k, n, _ in units}
    strata: dict[str, list[str]] = defaultdict(list)
    for key, _, stratum in units:
        strata[stratum].append(key)
    # Within a stratum, units are ordered by their hash; strata are then interleaved by relative
    # position, so filling test then val from the front of one global order gives exact overall
    # counts and per-stratum shares as close as whole units allow (small strata included).
    order: list[tuple[float, str, str]] = []
    for stratum in sorted(strata):
        keys = sorted(strata[stratum], key=lambda k: _hash(cfg.seed, k))
        order += [((rank + 0.5) / len(keys), _hash(cfg.seed, k), k) for rank, k in enumerate(keys)]
    order.sort()
    want = {"test": math.floor(total * cfg.test + 0.5), "val": math.floor(total * cfg.val + 0.5)}
    filled = {"test": 0, "val": 0}
    assignment: dict[str, str] = {}
    for _, _, k in order:
        name = next((s for s in ("test", "val") if filled[s] < want[s]), None)
        if name is None:
            break  # the rest is train
        filled[name] += size[k]
        assignment[k] = name
    return assignment


def split_records(records: list[Record], cfg: SplitConfig) -> dict[str, list[Record]]:
    cfg.validate()
    units: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        units[_unit_key(rec, cfg.by_cluster)].append(i)
    table = [(k, len(m), _stratum(records[m[0]], cfg.stratify)) for k, m in units.items()]
    assignment = unit_assignment(table, len(records), cfg)
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for rec in records:  # input order is kept inside each split
        out[assignment.get(_unit_key(rec, cfg.by_cluster), "train")].append(rec)
    return out
