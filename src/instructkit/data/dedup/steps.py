"""Exact and near-duplicate removal over the whole dataset; each step's Ray form is beside it
(``ray_exact.py``, ``ray_near.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from instructkit.config import checked
from instructkit.data.base import DatasetStep, Verdict, register
from instructkit.data.dedup.keys import KEYS, dedup_key, normalized_hash
from instructkit.data.dedup.near_dup import near_duplicate_clusters
from instructkit.data.dedup.ray_exact import exact_dedup_stage
from instructkit.data.dedup.ray_near import near_dedup_stage
from instructkit.records import Record


@register
@dataclass
class ExactDedup(DatasetStep):
    """Keep the first record of each group whose ``key`` text is equal after NFKC, casefolding and
    whitespace collapsing."""

    name = "exact_dedup"
    key: str = checked("prompt", choices=KEYS)
    """Which text is compared: instruction, prompt or conversation."""

    def run(self, records: list[Record], progress: Any = None) -> list[Verdict]:
        first: dict[str, str] = {}
        out = []
        for rec in records:
            h = normalized_hash(dedup_key(rec, self.key))
            if h in first:
                out.append(Verdict("exact_duplicate", f"duplicate of {first[h]}"))
            else:
                first[h] = rec.id
                out.append(Verdict())
        return out

    def ray_stage(self, engine: Any, alive: list[Any], stepno: int) -> list[Any]:
        return exact_dedup_stage(engine, alive, self.name, self.key, stepno)


@register
@dataclass
class NearDedup(DatasetStep):
    """MinHash + LSH near-duplicates on ``key`` text (see :mod:`instructkit.data.dedup.near_dup`). Every record
    gets ``meta.cluster`` (the id of its cluster's first record). ``action: drop`` keeps one
    representative per cluster; ``action: mark`` keeps all (the split then keeps each cluster together)."""

    name = "near_dedup"
    key: str = checked("prompt", choices=KEYS)
    """Which text is compared: instruction, prompt or conversation."""
    threshold: float = checked(0.7, gt=0, le=1)
    """Estimated Jaccard similarity of the n-gram sets from which two records are near-duplicates."""
    num_perm: int = checked(128, ge=1)
    """MinHash permutations: more estimate the similarity more closely, at more cost."""
    ngram: int = checked(5, ge=1)
    """Length of the shingles (in ``unit``s)."""
    unit: str = checked("char", choices=("char", "word"))
    """Shingles of characters or of words."""
    seed: int = 1
    """Seed of the MinHash permutations."""
    action: str = checked("drop", choices=("drop", "mark"))
    """drop: keep one record per cluster; mark: keep all (the split keeps each cluster together)."""

    def run(self, records: list[Record], progress: Any = None) -> list[Verdict]:
        texts = [dedup_key(r, self.key) for r in records]
        clusters = near_duplicate_clusters(
            texts,
            threshold=self.threshold,
            num_perm=self.num_perm,
            ngram=self.ngram,
            unit=self.unit,
            seed=self.seed,
        )
        out = []
        for i, c in enumerate(clusters.tolist()):
            rep = records[c].id
            if c == i or self.action == "mark":
                out.append(Verdict(meta={"cluster": rep}))
            else:
                out.append(Verdict("near_duplicate", f"cluster of {rep}"))
        return out

    def ray_stage(self, engine: Any, alive: list[Any], stepno: int) -> list[Any]:
        return near_dedup_stage(engine, alive, self, stepno)
