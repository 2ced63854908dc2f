"""Scoring a round: generate replies to a task's test prompts and score them 0-100 with the task's metric.

A continual task names any registered evaluation metric that scores a reply text (``evaluate/metrics``:
one with a ``headline`` and a ``reply_tokens`` budget): ``accuracy``, ``semeval-f1``, ``squad``,
``exact-match``, ``entity-f1-text``, ``rouge``, ``bleu``, ``chrf``, or one a user registered. What a
metric means here is the metric's own vocabulary, not a table in this package:

* the score is the metric's ``headline`` on a 0-100 scale (``Metric.headline_percent``);
* the longest reply generated for it is its ``reply_tokens`` (a task's ``max_new_tokens`` overrides it);
* a ``labelled`` metric (``accuracy``, ``semeval-f1``) reads each reply onto the task's ``labels`` with
  ``parse_label`` (whole reply, else the earliest label as whole words).

``entity-f1`` is accepted as the recipe name of ``entity-f1-text``: the token-classification metric of that
name cannot read a reply, recipes have used the short name since continual runs began, and the stage
digests hash the name as written, so renaming it would rerun finished rounds.

Replies are greedy (``Decoding()``), batched, from the model's own chat template: the same as
``instructkit eval``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from instructkit.evaluate.metrics import METRICS, Metric
from instructkit.files import write_text
from instructkit.records import Record

ALIASES = {"entity-f1": "entity-f1-text"}
"""Recipe metric names that stand for another registered metric (module docstring says why)."""
GENERAL_METRIC = "rouge"
"""The general-ability set is scored with ROUGE-L: its replies are free text with no label set."""
GENERATION_BATCH = 16


def text_metrics() -> list[str]:
    """Every metric name a continual task may use: registered metrics that score a reply, and the aliases."""
    names = [m.name for m in METRICS.values() if m.headline is not None and m.reply_tokens is not None]
    return sorted([*names, *ALIASES])


def text_metric(name: str) -> Metric:
    """The registered metric ``name`` (or its alias) stands for; ValueError naming the choices."""
    metric = METRICS.get(ALIASES.get(name, name))
    if metric is None or metric.headline is None or metric.reply_tokens is None:
        raise ValueError(
            f"{name!r} is not a metric that scores replies; choose one of {', '.join(text_metrics())}"
        )
    return metric


def prompts_and_refs(records: Sequence[Record]) -> tuple[list[list[dict[str, str]]], list[str]]:
    from instructkit.evaluate.replies import split_chat

    convs, refs = [], []
    for i, rec in enumerate(records):
        conv, ref = split_chat(rec, i)
        if ref is None:
            raise ValueError(f"record {i} ({rec.id}) has no assistant reply to score against")
        convs.append(conv)
        refs.append(ref)
    return convs, refs


def replies(lm: Any, convs: Sequence[list[dict[str, str]]], max_new_tokens: int, progress: bool) -> list[str]:
    from instructkit.decoding import Decoding
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
    m = text_metric(metric)
    kw: dict[str, Any] = {}
    if m.labelled:
        kw = {"labels": labels or sorted(set(references)), "parse": True}
    result = m.compute(list(predictions), list(references), **kw)
    details = {k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {"metric": metric, "score": m.headline_percent(result), "n": len(references), "details": details}


def write_predictions(
    path: Path, records: Sequence[Record], convs: list, refs: list[str], preds: list[str]
) -> None:
    lines = [
        json.dumps(
            {"id": r.id, "prompt": c[-1]["content"], "reference": ref, "prediction": p}, ensure_ascii=False
        )
        for r, c, ref, p in zip(records, convs, refs, preds, strict=True)
    ]
    write_text("".join(line + "\n" for line in lines), path)


def score_task(lm: Any, task: Any, folder: Path, progress: bool) -> dict[str, Any]:
    """One task's test split answered by ``lm`` and scored; its predictions written under ``folder``."""
    convs, refs = prompts_and_refs(task.test)
    preds = replies(lm, convs, task.spec.new_tokens, progress)
    write_predictions(folder / "predictions" / f"{task.spec.name}.jsonl", task.test, convs, refs, preds)
    return score(task.spec.metric, preds, refs, task.spec.labels)


def score_general(
    lm: Any, general: list[Record] | None, folder: Path, progress: bool
) -> dict[str, Any] | None:
    """The general-ability set answered by ``lm`` and scored with ROUGE-L (None when the recipe has none)."""
    if general is None:
        return None
    convs, refs = prompts_and_refs(general)
    preds = replies(lm, convs, text_metric(GENERAL_METRIC).reply_tokens, progress)
    write_predictions(folder / "predictions" / "general.jsonl", general, convs, refs, preds)
    return score(GENERAL_METRIC, preds, refs, None)
