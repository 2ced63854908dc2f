"""Exact and near-duplicate removal over the whole dataset."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

from instructkit.data.base import DatasetStep, StepConfigError, Verdict, register
from instructkit.data.text import all_text, first_instruction, prompt_text
from instructkit.records import Record

KEYS = ("instruction", "prompt", "conversation")


def dedup_key(record: Record, key: str) -> str:
    """The text a duplicate is judged on.

    ``instruction``: the first user turn up to its first blank line (the Alpaca/Dolly readers join
    instruction and input with a blank line); ``prompt``: all user turns (instruction + input);
    ``conversation``: every turn.
    """
    if key == "instruction":
        return first_instruction(record).split("\n\n", 1)[0]
    if key == "prompt":
        return prompt_text(record)
    return all_text(record)


def normalized_hash(text: str) -> str:
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _check_key(step: str, key: str) -> None:
    if key not in KEYS:
        raise StepConfigError(f"step '{step}': key must be one of {', '.join(KEYS)}, not {key!r}")


@register
@dataclass
class ExactDedup(DatasetStep):
    """Keep the first record of each group whose ``key`` text is equal after NFKC, casefolding and
    whitespace collapsing."""

    name = "exact_dedup"
    key: str = "prompt"

    def validate(self) -> None:
        _check_key(self.name, self.key)

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


@register
@dataclass
class NearDedup(DatasetStep):
    """MinHash + LSH near-duplicates on ``key`` text (see :mod:`instructkit.data.near_dup`). Every record
    gets ``meta.cluster`` (the id of its cluster's first record). ``action: drop`` keeps one
    representative per cluster; ``action: mark`` keeps all (the split then keeps each cluster together)."""

    name = "near_dedup"
    key: str = "prompt"
    threshold: float = 0.7
    num_perm: int = 128
    ngram: int = 5
    unit: str = "char"
    seed: int = 1
    action: str = "drop"

    def validate(self) -> None:
        _check_key(self.name, self.key)
        if not 0 < self.threshold <= 1:
            raise StepConfigError(f"step '{self.name}': threshold must be in (0, 1]")
        if self.action not in ("drop", "mark"):
            raise StepConfigError(f"step '{self.name}': action must be drop or mark")
        if self.unit not in ("char", "word"):
            raise StepConfigError(f"step '{self.name}': unit must be char or word")

    def run(self, records: list[Record], progress: Any = None) -> list[Verdict]:
        from instructkit.data.near_dup import near_duplicate_clusters

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
