"""Counts and length percentiles of a list of records (``instructkit data show``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from instructkit.records import Record


def _words(rec: Record) -> int:
    if rec.messages is not None:
        return sum(len(m.content.split()) for m in rec.messages)
    if rec.tokens is not None:
        return len(rec.tokens)
    return len((rec.text or "").split())


def percentiles(values: list[int], qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values)
    out = {f"p{q}": round(float(np.percentile(arr, q)), 1) for q in qs}
    out["min"] = float(arr.min())
    out["max"] = float(arr.max())
    out["mean"] = round(float(arr.mean()), 2)
    return out


def summarize(records: list[Record]) -> dict[str, Any]:
    kinds = Counter(r.kind for r in records)
    roles: Counter = Counter()
    turns = []
    tags: Counter = Counter()
    labels: Counter = Counter()
    for r in records:
        if r.messages is not None:
            roles.update(m.role for m in r.messages)
            turns.append(sum(1 for m in r.messages if m.role == "user"))
        if r.tags is not None:
            tags.update(t[2:] for t in r.tags if t != "O")
        if r.text is not None:
            labels.update([str(r.label)])
    return {
        "records": len(records),
        "kinds": dict(kinds),
        "tasks": dict(Counter(r.meta.get("task") or "-" for r in records).most_common()),
        "roles": dict(roles),
        "exchanges_per_conversation": percentiles(turns),
        "multi_turn": sum(1 for t in turns if t > 1),
        "words_per_record": percentiles([_words(r) for r in records]),
        "entity_tokens": dict(tags.most_common()),
        "labels": dict(labels.most_common()),
    }
