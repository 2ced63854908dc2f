"""Scoring a round: generate replies to a task's test prompts and score them 0-100 with the task's metric.

The metric names of a continual recipe map onto the evaluation metrics (``evaluate/metrics``):

* ``accuracy``: ``accuracy`` with ``parse=True`` — the label a reply names by the documented rule
  (``parse_label``: whole reply, else the earliest label as whole words), over ``labels``; × 100.
* ``entity-f1``: ``entity-f1-text`` — micro F1 over (type, span) pairs of ``type: span`` lines; × 100.
* ``rouge``: ``rouge`` — ROUGE-L F-measure (rouge_score, stemmed), mean over samples; × 100.

Replies are greedy (``Decoding()``), batched, from the model's own chat template: the same as
``instructkit eval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from instructkit.records import Record

HEADLINE = {
    "accuracy": ("accuracy", "accuracy"),
    "entity-f1": ("entity-f1-text", "f1"),
    "rouge": ("rouge", "rougeL"),
}
"""recipe metric -> (evaluation metric, the key of its result that is the score)."""
DEFINITIONS = {
    "accuracy": "share of replies that name the reference label (parse_label over the task's labels), x100",
    "entity-f1": "micro F1 over (type, span) pairs read from 'type: span' lines ('none': no entity), x100",
    "rouge": "ROUGE-L F-measure (rouge_score, Porter-stemmed), mean over test samples, x100",
}
GENERATION_BATCH = 16


def prompts_and_refs(records: Sequence[Record]) -> tuple[list[list[dict[str, str]]], list[str]]:
    from instructkit.evaluate.scoring import split_chat

    convs, refs = [], []
    for i, rec in enumerate(records):
        conv, ref = split_chat(rec, i)
        if ref is None:
            raise ValueError(f"record {i} ({rec.id}) has no assistant reply to score against")
        convs.append(conv)
        refs.append(ref)
    return convs, refs


def replies(lm: Any, convs: Sequence[list[dict[str, str]]], max_new_tokens: int, progress: bool) -> list[str]:
    from instructkit.evaluate.generate import Decoding
    from instructkit.evaluate.scoring import generate_replies

    if not convs:
        return []
    out = generate_replies(
        lm, list(convs), Decoding(max_new_tokens=max_new_tokens), GENERATION_BATCH, progress
    )
    return [r[0] for r in out]


def score(
    metric: str, predictions: Sequence[str], references: Sequence[str], labels: list[str] | None
) -> dict:
    """``{"metric", "score" (0-100), "n", "details"}`` for one task's replies."""
    from instructkit.evaluate.metrics import get_metric

    name, key = HEADLINE[metric]
    kw: dict[str, Any] = {}
    if metric == "accuracy":
        kw = {"labels": labels or sorted(set(references)), "parse": True}
    result = get_metric(name).compute(list(predictions), list(references), **kw)
    details = {k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {"metric": metric, "score": 100.0 * float(result[key]), "n": len(references), "details": details}
