"""Classification scores (scikit-learn): accuracy, macro/micro F1, per-class precision/recall/F1, and the
rule that turns a generative classifier's free-text reply into one of the labels.

A prediction that is not a known label (``None`` from ``parse_label``, or any other value) counts as wrong
and is counted under ``unparsed``. It is left out of the label set the F1s average over, so it costs
recall for its true class but is not a false positive of any real class; macro F1 therefore never gains
a fake zero-support class, and micro F1 can differ from accuracy (it equals it when everything parses).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Hashable, Sequence
from functools import lru_cache
from typing import Any

from instructkit.evaluate.metrics import check_pairs, is_cjk, register


def normalize_reply(text: str) -> str:
    """Casefold, punctuation (Unicode category P*, so ``_`` and ``-`` too) to spaces, whitespace collapsed."""
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.casefold())
    return " ".join(text.split())


@lru_cache(maxsize=64)
def _normalized_labels(labels: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    seen: dict[str, str] = {}
    for label in labels:
        norm = normalize_reply(label)
        if not norm:
            raise ValueError(f"label {label!r} is empty once case and punctuation are removed")
        if norm in seen:
            raise ValueError(f"labels {seen[norm]!r} and {label!r} are the same once normalized; rename one")
        seen[norm] = label
    return tuple((norm, label) for norm, label in seen.items())


def _first_whole_word(text: str, norm: str) -> int | None:
    """Offset of the first occurrence of ``norm`` in ``text`` bounded on each side by the text's edge, a
    space or a CJK character. An edge of ``norm`` that is itself CJK needs no boundary: those scripts
    put no space between words, so "正面" is found inside "这是正面的"."""
    start = text.find(norm)
    while start != -1:
        end = start + len(norm)
        left_ok = start == 0 or text[start - 1] == " " or is_cjk(text[start - 1]) or is_cjk(norm[0])
        right_ok = end == len(text) or text[end] == " " or is_cjk(text[end]) or is_cjk(norm[-1])
        if left_ok and right_ok:
            return start
        start = text.find(norm, start + 1)
    return None


def parse_label(reply: str, labels: Sequence[str]) -> str | None:
    """The label a free-text reply names, or ``None`` (scored wrong, counted as unparsed).

    Rule, on replies and labels normalised by ``normalize_reply`` (case, punctuation, spacing):
    1. the whole reply equals a label -> that label;
    2. else the label found earliest in the reply as whole word(s) ("Answer: Positive." -> positive;
       "not_entailment" matches "not entailment"); at the same offset the longer label wins, since the
       shorter is then part of it ("very positive" over "very");
    3. no label found -> ``None``.
    The rule does not read negation: "not positive" parses as positive. Two labels that normalise to the same
    text are a ``ValueError``, since no reply could tell them apart.
    """
    norm_labels = _normalized_labels(tuple(labels))
    text = normalize_reply(reply)
    for norm, label in norm_labels:
        if text == norm:
            return label
    best: tuple[int, int, str] | None = None
    for norm, label in norm_labels:
        at = _first_whole_word(text, norm)
        if at is not None and (best is None or (at, -len(norm)) < best[:2]):
            best = (at, -len(norm), label)
    return None if best is None else best[2]


def _known_labels(
    references: Sequence[Any], predictions: Sequence[Any], labels: Sequence[Any] | None
) -> list:
    for value in [*references, *(labels or [])]:
        if not isinstance(value, Hashable) or value is None:
            raise ValueError(f"classification labels must be single hashable values, got {value!r}")
    if labels is not None:
        unknown = sorted({repr(r) for r in references if r not in set(labels)})
        if unknown:
            raise ValueError(f"references hold labels not in labels=: {', '.join(unknown[:10])}")
        return list(labels)
    # scikit-learn's default: the sorted union of true and predicted labels
    pool = set(references) | {p for p in predictions if p is not None and isinstance(p, Hashable)}
    try:
        return sorted(pool)
    except TypeError:
        raise ValueError(f"labels mix types that do not sort together: {sorted(map(repr, pool))}") from None


@register(
    "accuracy",
    "classification",
    headline="accuracy",
    reply_tokens=8,
    labelled=True,
    definition="share of replies that name the reference label (parse_label over the task's labels), x100",
)
def compute(
    predictions: Sequence[Any],
    references: Sequence[Any],
    labels: Sequence[Any] | None = None,
    parse: bool = False,
) -> dict[str, Any]:
    """Accuracy, macro/micro F1 and per-class precision/recall/F1/support.

    ``labels``: the label set, in report order (default: sorted union of references and predictions, as
    scikit-learn does). ``parse``: predictions are free-text replies, mapped with ``parse_label`` onto
    ``labels`` (default: the sorted reference labels); labels are then compared as text.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    check_pairs(predictions, references, "accuracy")
    if parse:
        labels = [str(x) for x in (labels if labels is not None else sorted(set(references), key=str))]
        references = [str(r) for r in references]
        predictions = [parse_label(str(p), labels) for p in predictions]
    known = _known_labels(references, predictions, labels)
    # Encode to indices so an unparsed prediction (-1) never mixes types with the labels inside sklearn.
    index = {label: i for i, label in enumerate(known)}
    y_true = [index[r] for r in references]
    y_pred = [index.get(p, -1) if isinstance(p, Hashable) else -1 for p in predictions]
    ids = list(range(len(known)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y_true, y_pred, labels=ids, average="micro", zero_division=0)),
        "per_class": {
            str(label): {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, label in enumerate(known)
        },
        "n": len(y_true),
        "unparsed": sum(1 for y in y_pred if y == -1),
    }
