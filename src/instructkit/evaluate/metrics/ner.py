"""Entity precision/recall/F1 with seqeval, per entity type and overall (micro average over entities).

Two modes, because they disagree on ill-formed tag sequences and a report must say which it used:
* default (``entity-f1``): seqeval's conlleval-compatible chunking, which starts an entity at a stray
  ``I-X`` -- ``[I-X, I-X]`` against gold ``[B-X, I-X]`` counts as a correct entity;
* strict (``entity-f1-strict``): ``mode="strict"`` with a scheme (IOB2 by default), where an entity must
  be exactly well formed -- the same prediction is wrong.
A model that emits ``I-`` without ``B-`` scores higher in the default mode; compare both when tagging
quality matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from instructkit.evaluate.metrics import check_pairs, register

_SCHEMES = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU")
_AVERAGES = ("micro avg", "macro avg", "weighted avg")


def _seqeval_options(strict: bool, scheme: str) -> dict[str, Any]:
    if not strict:
        return {}
    if scheme not in _SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; one of {', '.join(_SCHEMES)}")
    from seqeval import scheme as schemes

    return {"mode": "strict", "scheme": getattr(schemes, scheme)}


@register("entity-f1-strict", "token-classification", options={"strict": True}, headline="f1")
@register("entity-f1", "token-classification", headline="f1")
def compute(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    strict: bool = False,
    scheme: str = "IOB2",
) -> dict[str, Any]:
    """Overall entity ``precision``/``recall``/``f1`` and ``per_type`` scores with support.

    ``predictions``/``references``: one tag sequence per sentence (``B-PER``, ``I-PER``, ``O``...), equal
    lengths pairwise. ``strict``: seqeval's strict mode with ``scheme`` (ignored when not strict).
    """
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    name = "entity-f1-strict" if strict else "entity-f1"
    check_pairs(predictions, references, name)
    for i, (p, r) in enumerate(zip(predictions, references, strict=True)):
        if len(p) != len(r):
            raise ValueError(f"{name}: sentence {i} has {len(p)} predicted tags but {len(r)} gold tags")
    y_true, y_pred = [list(r) for r in references], [list(p) for p in predictions]
    kw = _seqeval_options(strict, scheme)
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0, **kw)
    return {
        "precision": float(precision_score(y_true, y_pred, zero_division=0, **kw)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0, **kw)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0, **kw)),
        "per_type": {
            t: {
                "precision": float(v["precision"]),
                "recall": float(v["recall"]),
                "f1": float(v["f1-score"]),
                "support": int(v["support"]),
            }
            for t, v in report.items()
            if t not in _AVERAGES
        },
        "mode": f"strict-{scheme}" if strict else "default",
    }
