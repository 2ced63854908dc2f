"""Relation-classification macro-F1 as SemEval-2010 Task 8 scores it officially
(``semeval2010_task8_scorer-v1.2.pl``), so numbers compare with the published ones on that data set.

The official score is the scorer's "(9+1)-way evaluation with directionality taken into account":
labels such as ``Component-Whole(e2,e1)`` are grouped into relation types by dropping the direction
suffix (``(e1,e2)``/``(e2,e1)``), and ``Other`` has none. Its rules, kept here:

* A prediction is correct only when it is the reference label exactly: relation and direction.
* For each relation type X of the references, P = correct X / predictions whose type is X (both
  directions); R = correct X / references whose type is X. So a wrong-direction prediction
  (``X(e1,e2)`` for ``X(e2,e1)``) is both a false positive and a false negative of X (the scorer's
  ``xDIRx`` column, added back into X's precision denominator since v1.2), and a prediction of another
  type is a false positive of that type and a false negative of X.
* ``Other`` (``other_label``) is no class of the average, yet it still moves the others' scores: a
  reference ``Other`` predicted as X is a false positive of X, an X predicted as ``Other`` a miss of X.
* F1 is formed per type from its P and R (0 when both are 0, P is 0 when X is never predicted), and the
  macro F1 (the headline) is the plain mean of those F1s over the non-Other types present in the
  references; macro P and R are the means of the per-type P and R, so macro F1 is not 2PR/(P+R) of them.
* Types that appear only in predictions are no class of the average: their predictions only cost the
  references they miss, as if they were ``Other`` (the scorer's note). A prediction that is no label
  (``None``, outside ``labels=``, or a reply ``parse_label`` cannot map) is the scorer's "skipped"
  example, counted as ``unparsed``: a miss of its reference and no one's false positive, again as ``Other``.
* Micro P/R/F1 pool the same counts over the non-Other reference types; accuracy is exact matches over
  all examples, skipped ones wrong (the scorer's "considering all skipped examples as Wrong").

Scores are percentages (0-100) as the scorer prints them. Keys carry a ``semeval_`` prefix so this result
can sit beside ``accuracy``'s in one eval without overwriting it. References holding no type but ``Other``
are an error (the scorer dies dividing by zero there). Any label set works, not only SemEval's 19: a label
without a direction suffix is its own type, and ``other_label`` names the excluded one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from instructkit.evaluate.metrics import check_pairs, register

_DIRECTION = re.compile(r"\(e[12],e[12]\)$")


def relation_type(label: str) -> str:
    """The label without its direction suffix: ``Component-Whole(e2,e1)`` -> ``Component-Whole``."""
    return _DIRECTION.sub("", label)


def _prf(correct: int, proposed: int, actual: int) -> tuple[float, float, float]:
    p = 100.0 * correct / proposed if proposed else 0.0
    r = 100.0 * correct / actual if actual else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


@register(
    "semeval-f1",
    "classification",
    headline="semeval_macro_f1",
    percent=True,
    reply_tokens=8,
    labelled=True,
    definition="SemEval-2010 Task 8 macro F1 over the relation types (direction-aware, Other excluded)",
)
def compute(
    predictions: Sequence[Any],
    references: Sequence[Any],
    other_label: str = "Other",
    labels: Sequence[Any] | None = None,
    parse: bool = False,
) -> dict[str, Any]:
    """``semeval_macro_f1`` (headline), macro/micro P/R/F1 and accuracy (0-100), per-type P/R/F1/support,
    and the counts ``n``, ``unparsed`` (skipped) and ``wrong_direction``.

    ``labels``: the label set; with ``parse`` predictions are free-text replies mapped onto it by
    ``parse_label`` (default: the sorted reference labels), without it a prediction outside it is unparsed.
    """
    check_pairs(predictions, references, "semeval-f1")
    for r in references:
        if not isinstance(r, str):
            raise ValueError(f"semeval-f1: references must be label strings, got {r!r}")
    if labels is not None:
        labels = [str(x) for x in labels]
        unknown = sorted({repr(r) for r in references if r not in set(labels)})
        if unknown:
            raise ValueError(f"semeval-f1: references hold labels not in labels=: {', '.join(unknown[:10])}")
    if parse:
        from instructkit.evaluate.metrics.classification import parse_label

        labels = labels if labels is not None else sorted(set(references))
        preds: list[str | None] = [parse_label(str(p), labels) for p in predictions]
    else:
        allowed = None if labels is None else set(labels)
        preds = [p if isinstance(p, str) and (allowed is None or p in allowed) else None for p in predictions]

    actual: Counter[str] = Counter()  # references per type
    proposed: Counter[str] = Counter()  # predictions per type, both directions
    correct: Counter[str] = Counter()  # exact matches per type
    wrong_direction = 0
    for pred, ref in zip(preds, references, strict=True):
        ref_type = relation_type(ref)
        actual[ref_type] += 1
        if pred is None:
            continue
        pred_type = relation_type(pred)
        proposed[pred_type] += 1
        if pred == ref:
            correct[ref_type] += 1
        elif pred_type == ref_type:
            wrong_direction += 1

    classes = sorted(t for t in actual if t != other_label)
    if not classes:
        raise ValueError(f"semeval-f1: the references hold no relation type other than {other_label!r}")
    per_class: dict[str, dict[str, Any]] = {}
    for t in sorted(actual):
        p, r, f = _prf(correct[t], proposed[t], actual[t])
        per_class[t] = {"precision": p, "recall": r, "f1": f, "support": actual[t]}
    micro = _prf(*(sum(c[t] for t in classes) for c in (correct, proposed, actual)))
    return {
        "semeval_macro_f1": sum(per_class[t]["f1"] for t in classes) / len(classes),
        "semeval_macro_precision": sum(per_class[t]["precision"] for t in classes) / len(classes),
        "semeval_macro_recall": sum(per_class[t]["recall"] for t in classes) / len(classes),
        "semeval_micro_precision": micro[0],
        "semeval_micro_recall": micro[1],
        "semeval_micro_f1": micro[2],
        "semeval_accuracy": 100.0 * sum(correct.values()) / len(references),
        "semeval_per_class": per_class,
        "n": len(references),
        "unparsed": sum(1 for p in preds if p is None),
        "wrong_direction": wrong_direction,
    }
