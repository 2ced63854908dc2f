"""Deterministic, optionally stratified, cluster-aware train/val/test split, one assignment for both engines.

Units are near-duplicate clusters (``meta.cluster``) when present, else single records, so paraphrases
never straddle train and test. A unit's place in the order is a hash of (seed, unit key), not of its
position: the same seed gives the same split even if the input order changes.

The assignment (:func:`assign_units`) is numpy over a compact unit table, 28 bytes per record: each
record's unit hash (the first 128 bits of ``sha1(f"{seed}:{unit key}")``, two uint64) and stratum code,
in input order. Within a stratum, units are ordered by their hash; strata are then interleaved by
relative rank, ``(rank + 0.5) / units in the stratum`` (ties broken by the hash), so filling test then val
from the front of that one global order gives exact overall counts and per-stratum shares as close as
whole units allow (small strata included). A unit's stratum is its first record's. The local engine calls
it over its records (:func:`split_records`); the Ray engine over the table its workers send (the unit
keys' strings would take ~100 bytes a record plus a dict) and gives each worker two hash bounds per
stratum (``data.engines.ray.split``). Two distinct units sharing the first 128 bits of their hash (odds
~n^2 / 2^129) would be taken for one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from instructkit.config import ConfigError, checked
from instructkit.records import Record

SPLITS = ("train", "val", "test")
CODES = ("train", "test", "val")  # the split codes 0, 1, 2 of :class:`Assignment`


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


def unit_key(rec: Record, by_cluster: bool) -> str:
    """The unit a record is split with: its near-duplicate cluster, or the record alone."""
    if by_cluster and rec.meta.get("cluster"):
        return f"cluster:{rec.meta['cluster']}"
    return f"record:{rec.id}:{rec.content_hash()}"


def stratum(rec: Record, stratify: str | None) -> str:
    if stratify == "task":
        return str(rec.meta.get("task") or "-")
    if stratify == "label":
        if rec.text is not None:
            return str(rec.label)
        return str(rec.meta.get("label") or rec.meta.get("task") or "-")
    return ""


def unit_hash(seed: int, key: str) -> str:
    """The 32 hex digits (128 bits) a unit is ordered by: the start of ``sha1(f"{seed}:{key}")``."""
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:32]


def hash_words(hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Unit hashes (:func:`unit_hash`) as two uint64 columns, high and low, that sort as the hex does."""
    hi = np.array([int(h[:16], 16) for h in hashes], dtype=np.uint64)
    lo = np.array([int(h[16:], 16) for h in hashes], dtype=np.uint64)
    return hi, lo


def hex128(hi: object, lo: object) -> str:
    """The 32 hex digits of a unit hash held as two uint64 ("~" sorts after every one of them)."""
    return f"{int(hi):016x}{int(lo):016x}"  # type: ignore[call-overload]


@dataclass
class Assignment:
    """The split of each unit, units in hash order; ``unit_of`` maps each record to its unit."""

    unit_of: np.ndarray  # per record (in input order): its unit's number
    hi: np.ndarray  # per unit: its hash, high and low words
    lo: np.ndarray
    code: np.ndarray  # per unit: its stratum code (its first record's)
    split: np.ndarray  # per unit: 0 train, 1 test, 2 val (CODES)
    mixed: np.ndarray  # per unit: its records are in more than one stratum

    def of_records(self) -> np.ndarray:
        """The split code of each record, in input order."""
        return self.split[self.unit_of]


def assign_units(
    hi: np.ndarray, lo: np.ndarray, code: np.ndarray, n_strata: int, val: float, test: float
) -> Assignment:
    """The assignment (see the module docstring) of records given in input order by their unit hash
    (``hi``, ``lo``) and stratum code (``code``, below ``n_strata``)."""
    total = len(hi)
    if not total:
        empty = np.zeros(0, dtype=np.int64)
        return Assignment(empty, hi[:0], lo[:0], code[:0], np.zeros(0, np.int8), np.zeros(0, bool))
    # units: records grouped by hash, in hash order; a unit's stratum is its first record's
    order = np.lexsort((lo, hi))  # stable: a unit's records stay in input order
    s_hi, s_lo, s_code = hi[order], lo[order], code[order]
    start = np.flatnonzero(np.r_[True, (s_hi[1:] != s_hi[:-1]) | (s_lo[1:] != s_lo[:-1])])
    size = np.diff(np.r_[start, total])
    unit_code = s_code[start]
    mixed = np.zeros(len(start), dtype=bool)
    differ = np.flatnonzero(s_code != np.repeat(unit_code, size))
    mixed[np.searchsorted(start, differ, side="right") - 1] = True
    unit_of = np.empty(total, dtype=np.int64)
    unit_of[order] = np.repeat(np.arange(len(start)), size)
    u_hi, u_lo = s_hi[start], s_lo[start]
    del s_hi, s_lo, s_code, order
    # rank within the stratum (units are in hash order), then the global order
    by_stratum = np.argsort(unit_code, kind="stable")
    n_s = np.bincount(unit_code, minlength=n_strata)
    first_of = np.r_[0, np.cumsum(n_s)[:-1]]
    rank = np.empty(len(start), dtype=np.int64)
    rank[by_stratum] = np.arange(len(start)) - first_of[unit_code[by_stratum]]
    pos = (rank + 0.5) / n_s[unit_code]
    glob = np.lexsort((u_lo, u_hi, pos))
    before = np.cumsum(size[glob]) - size[glob]  # records placed before each unit, in that order
    want_test, want_val = math.floor(total * test + 0.5), math.floor(total * val + 0.5)
    split = np.zeros(len(start), dtype=np.int8)
    n_test = int(np.count_nonzero(before < want_test))
    split[glob[:n_test]] = 1
    base = before[n_test] if n_test < len(glob) else 0
    n_val = int(np.count_nonzero(before[n_test:] - base < want_val))
    split[glob[n_test : n_test + n_val]] = 2
    return Assignment(unit_of, u_hi, u_lo, unit_code, split, mixed)


def split_records(records: list[Record], cfg: SplitConfig) -> dict[str, list[Record]]:
    """The records of each split, in input order inside each."""
    cfg.validate()
    hi, lo = hash_words([unit_hash(cfg.seed, unit_key(r, cfg.by_cluster)) for r in records])
    strata = [stratum(r, cfg.stratify) for r in records]
    names = sorted(set(strata))
    where = {name: c for c, name in enumerate(names)}
    code = np.array([where[s] for s in strata], dtype=np.int64)
    assignment = assign_units(hi, lo, code, len(names), cfg.val, cfg.test)
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for rec, c in zip(records, assignment.of_records().tolist(), strict=True):
        out[CODES[c]].append(rec)
    return out
