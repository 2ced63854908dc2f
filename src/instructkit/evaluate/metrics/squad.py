"""SQuAD v1.1 exact match and token F1, computed as the official ``evaluate-v1.1.py`` does, so numbers
compare with published ones.

Kept on purpose from the official script: answers are normalised by lower-casing, dropping ASCII
punctuation (``string.punctuation`` only), dropping the English articles a/an/the and collapsing
whitespace; each prediction takes its best score over its gold answers; scores are percentages (0-100).
Also kept: an empty prediction or gold answer has F1 0 even when both are empty (v2.0 changed that), and
tokens are whitespace-split, so text without spaces (Chinese) is a single token.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from instructkit.evaluate.metrics import check_pairs, register

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official order of the steps)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def token_f1(prediction: str, ground_truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0
    precision, recall = same / len(pred), same / len(gold)
    return (2 * precision * recall) / (precision + recall)


def exact_match(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


@register(
    "squad",
    "generation",
    headline="f1",
    percent=True,
    reply_tokens=32,
    definition="SQuAD v1.1 token F1 (the official script's normalisation), best over gold answers",
)
@register(
    "exact-match",
    "generation",
    headline="exact_match",
    percent=True,
    reply_tokens=32,
    definition="SQuAD v1.1 exact match (the official script's normalisation), best over gold answers",
)
def compute(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """``exact_match`` and ``f1`` (0-100); each reference is one gold answer or a list of them."""
    check_pairs(predictions, references, "squad")
    em = f1 = 0
    for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
        golds = [ref] if isinstance(ref, str) else list(ref)
        if not golds:
            raise ValueError(f"squad: reference {i} has no gold answer")
        em += max(exact_match(pred, g) for g in golds)
        f1 += max(token_f1(pred, g) for g in golds)
    return {"exact_match": 100.0 * em / len(predictions), "f1": 100.0 * f1 / len(predictions)}
