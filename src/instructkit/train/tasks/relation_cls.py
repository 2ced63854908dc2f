"""relation-classification: a sentence with its two entities marked (``<e1>``…``</e1>``, ``<e2>``…``</e2>``,
SemEval-2010 Task 8's markers) -> the relation between them, read from the encoder's states at the two
start markers.

This is the "entity markers, entity start" model of Baldini Soares et al. (2019, *Matching the Blanks*),
which beat pooling the [CLS] state or the entity spans on SemEval-2010 Task 8. One change keeps the result a
plain transformers model: instead of one linear layer over the concatenation ``[h_e1; h_e2]``, a shared
linear layer scores each start marker (a token-classification head trained with the relation's label at
both positions and -100 everywhere else) and the prediction sums the two rows of logits, i.e. a linear
layer over ``h_e1 + h_e2``. So the trained folder is an ``AutoModelForTokenClassification`` that exports,
merges and reloads with plain transformers (``serve/export.py``), with no code of ours to ship beside it.

The markers stay in the text as they are: WordPiece and byte-level BPE both split ``<e1>`` into pieces
whose first starts at the ``<``, found from the fast tokenizer's offsets, so no token is added to the
vocabulary and the embedding matrix keeps its size. A record is a text record (``text`` with markers,
``label`` the relation) or a chat record whose user turn holds the marked text and whose label is
``meta.label`` or else its assistant turn (what the run recipe's template stage writes with a template
whose prompt is ``{{ marked_text }}`` and answer ``{{ relation }}``). A record whose start markers do not
fit in ``max_length`` tokens is left out of training and counted (``marker_truncated``); in eval it is
predicted as no label (``None``), a miss.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from instructkit.records import Record
from instructkit.templates import IGNORE_INDEX
from instructkit.train.tasks.base import LabelInfo, TaskDataError, register
from instructkit.train.tasks.token_cls import TokenClassification

START_MARKERS = ("<e1>", "<e2>")


def marked_text_and_label(rec: Record, i: int) -> tuple[str, str | None]:
    """``(text with markers, relation label or None)`` of record ``i``; an error names the record when
    the text lacks a start marker."""
    if rec.text is not None:
        text, label = rec.text, rec.label
    elif rec.messages:
        text = rec.prompt_text()
        label = rec.meta.get("label")
        if label is None:
            replies = [m.content for m in rec.messages if m.role == "assistant"]
            label = replies[-1].strip() if replies else None
    else:
        raise TaskDataError(
            f"record {i} ({rec.id}) is a {rec.kind} record; relation-classification needs text"
        )
    missing = [m for m in START_MARKERS if m not in text]
    if missing:
        raise TaskDataError(
            f"record {i} ({rec.id}) has no {' or '.join(missing)} marker; relation-classification needs the "
            "head marked <e1>…</e1> and the tail <e2>…</e2>"
        )
    return text, (None if label is None else str(label))


def marker_positions(text: str, offsets: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The token indices of the two start markers: the first token whose character span holds the
    marker's ``<`` (a byte-level BPE token may start with the space before it); None when truncation cut
    either off."""
    found = []
    for marker in START_MARKERS:
        at = text.index(marker)
        pos = next((j for j, (s, e) in enumerate(offsets) if e > s and s <= at < e), None)
        if pos is None:
            return None
        found.append(pos)
    return found[0], found[1]


def encode(text: str, tokenizer: Any, max_length: int) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """Tokenize with offsets; return the model inputs and the start markers' token indices (or None)."""
    if not getattr(tokenizer, "is_fast", False):
        raise TaskDataError(
            "relation-classification needs a fast tokenizer (it finds the markers by offsets)"
        )
    enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    return (
        {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
        marker_positions(text, enc["offset_mapping"]),
    )


def predict(logits: np.ndarray, positions: tuple[int, int] | None, names: list[str]) -> str | None:
    """The relation whose summed logit over the two start markers is highest."""
    if positions is None:
        return None
    return names[int(np.argmax(logits[positions[0]] + logits[positions[1]]))]


@register
class RelationClassification(TokenClassification):
    """A token-classification model underneath (its model class, label kwargs and collator are
    inherited); what differs is which positions carry a label and how a prediction is read."""

    name = "relation-classification"
    evaluation = "relation"
    default_metrics = ("semeval-f1", "accuracy")

    def labels(self, records: list[Record]) -> LabelInfo:
        values = []
        for i, rec in enumerate(records):
            _, label = marked_text_and_label(rec, i)
            if label is None:
                raise TaskDataError(f"record {i} ({rec.id}) has no relation label")
            values.append(label)
        return LabelInfo(sorted(set(values)), "single_label_classification")

    def features(self, records: list[Record], tokenizer: Any, labels: LabelInfo, max_length: int, **kw: Any):
        index = {n: i for i, n in enumerate(labels.names)}
        out, dropped = [], Counter()
        for i, rec in enumerate(records):
            text, label = marked_text_and_label(rec, i)
            feats, positions = encode(text, tokenizer, max_length)
            if positions is None:
                dropped["marker_truncated"] += 1
                continue
            if label not in index:
                raise TaskDataError(
                    f"record {i} ({rec.id}) has relation {label!r}, not seen in training ({', '.join(labels.names)})"
                )
            tags = [IGNORE_INDEX] * len(feats["input_ids"])
            for p in positions:
                tags[p] = index[label]
            out.append({**feats, "labels": tags})
        return out, dropped

    def compute_metrics(self, labels: LabelInfo) -> Any:
        from sklearn.metrics import accuracy_score, f1_score

        def metrics(pred) -> dict[str, float]:
            guess, gold = [], []
            for lg, row in zip(pred.predictions, pred.label_ids, strict=True):
                at = np.flatnonzero(row != IGNORE_INDEX)
                gold.append(int(row[at[0]]))
                guess.append(int(np.argmax(lg[at].sum(axis=0))))
            return {
                "accuracy": float(accuracy_score(gold, guess)),
                "f1": float(f1_score(gold, guess, average="macro", zero_division=0)),
            }

        return metrics
