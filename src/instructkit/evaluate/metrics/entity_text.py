"""Entity precision/recall/F1 for NER written as text (a generative model answering an NER instruction).

The answer format, which the continual recipe's NER task uses for both references and replies:

    type: span          one entity per line, e.g. "person: Ada Lovelace"
    none                the whole answer when the text has no entity

Parsing (the same rule for reference and reply): each non-empty line is split at its first ``:``; the
type is lower-cased and stripped, the span has its whitespace collapsed and is compared case-insensitively;
a line without ``:`` (or with an empty type or span) is not an entity and is counted as ``malformed``
(``none`` on its own is not malformed). An answer is a *set* of (type, span) pairs: a pair written twice
counts once, since the sentence's entity list is a set.

Scores are micro-averaged over entities across the whole split, as seqeval's entity F1 is over tag
sequences: TP = pairs in both, precision = TP / predicted pairs, recall = TP / gold pairs. When neither
side holds an entity anywhere in the split, all three are 1.0 (every "none" was right). 0-1 scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from instructkit.evaluate.metrics import check_pairs, register

NONE_ANSWER = "none"


def parse_entities(text: str) -> tuple[set[tuple[str, str]], int]:
    """``"person: Ada\\nloc: Paris"`` -> ({("person", "ada"), ("loc", "paris")}, malformed lines)."""
    pairs: set[tuple[str, str]] = set()
    malformed = 0
    for raw in str(text).splitlines():
        line = raw.strip().strip("-*•").strip()
        if not line or line.casefold().rstrip(".") == NONE_ANSWER:
            continue
        kind, sep, span = line.partition(":")
        kind, span = kind.strip().casefold(), " ".join(span.split()).casefold()
        if not sep or not kind or not span:
            malformed += 1
            continue
        pairs.add((kind, span))
    return pairs, malformed


@register(
    "entity-f1-text",
    "generation",
    headline="f1",
    reply_tokens=64,
    definition="micro F1 over (type, span) pairs read from 'type: span' lines ('none': no entity), x100",
)
def compute(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Micro entity ``precision``/``recall``/``f1`` over (type, span) pairs, ``per_type`` scores, and the
    count of reply lines that could not be read as ``type: span`` (``malformed``)."""
    check_pairs(predictions, references, "entity-f1-text")
    tp = n_pred = n_gold = malformed = 0
    per: dict[str, list[int]] = {}  # type -> [tp, predicted, gold]
    for pred, ref in zip(predictions, references, strict=True):
        p, bad = parse_entities(pred)
        g, _ = parse_entities(ref)
        malformed += bad
        tp += len(p & g)
        n_pred += len(p)
        n_gold += len(g)
        for kind, _span in p:
            per.setdefault(kind, [0, 0, 0])[1] += 1
        for kind, _span in g:
            per.setdefault(kind, [0, 0, 0])[2] += 1
        for kind, _span in p & g:
            per[kind][0] += 1

    def prf(t: int, np_: int, ng: int) -> tuple[float, float, float]:
        if np_ == 0 and ng == 0:
            return 1.0, 1.0, 1.0
        precision = t / np_ if np_ else 0.0
        recall = t / ng if ng else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1

    precision, recall, f1 = prf(tp, n_pred, n_gold)
    per_type = {}
    for kind, (t, np_, ng) in sorted(per.items()):
        pk, rk, fk = prf(t, np_, ng)
        per_type[kind] = {"precision": pk, "recall": rk, "f1": fk, "support": ng}
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "per_type": per_type,
        "n": len(references),
        "malformed": malformed,
    }
