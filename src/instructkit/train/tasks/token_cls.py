"""token-classification (NER): word-level tags aligned to sub-word tokens — the first sub-token of a
word carries its tag, the rest -100 — scored with seqeval (entity F1, default mode)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from instructkit.records import Record
from instructkit.templates import IGNORE_INDEX
from instructkit.train.tasks.base import LabelInfo, Task, register, require_kind


def align_labels(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """First sub-token of each word gets the word's tag; other sub-tokens and specials get -100."""
    out, prev = [], None
    for w in word_ids:
        out.append(IGNORE_INDEX if w is None or w == prev else tags[w])
        prev = w
    return out


@register
class TokenClassification(Task):
    name = "token-classification"
    default_metric = "f1"
    greater_is_better = True
    auto_model = "AutoModelForTokenClassification"
    peft_task_type = "TOKEN_CLS"
    has_labels = True
    evaluation = "tagging"
    default_metrics = ("entity-f1", "entity-f1-strict")

    def labels(self, records: list[Record]) -> LabelInfo:
        for i, r in enumerate(records):
            require_kind(r, i, ("tokens",), self.name)
        tags = {t for r in records for t in r.tags or []}
        types = sorted({t[2:] for t in tags if t != "O"})
        return LabelInfo(["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")])

    def model_kwargs(self, labels: LabelInfo) -> dict[str, Any]:
        return {
            "num_labels": len(labels.names),
            "id2label": dict(enumerate(labels.names)),
            "label2id": {n: i for i, n in enumerate(labels.names)},
        }

    def features(self, records: list[Record], tokenizer: Any, labels: LabelInfo, max_length: int, **kw: Any):
        index = {n: i for i, n in enumerate(labels.names)}
        out = []
        unseen: Counter = Counter()
        for i, rec in enumerate(records):
            require_kind(rec, i, ("tokens",), self.name)
            enc = tokenizer(rec.tokens, is_split_into_words=True, truncation=True, max_length=max_length)
            tag_ids = []
            for t in rec.tags or []:
                if t not in index:  # a type absent from training data can't be predicted; score it as O
                    unseen[t] += 1
                    t = "O"
                tag_ids.append(index[t])
            out.append(
                {
                    "input_ids": enc["input_ids"],
                    "attention_mask": enc["attention_mask"],
                    "labels": align_labels(enc.word_ids(), tag_ids),
                }
            )
        return out, Counter({f"unseen_tag:{k}": v for k, v in unseen.items()})

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def compute_metrics(self, labels: LabelInfo) -> Any:
        from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

        names = labels.names

        def metrics(pred) -> dict[str, float]:
            guess = np.argmax(pred.predictions, axis=-1)
            y_true, y_pred = [], []
            for g_row, p_row in zip(pred.label_ids, guess, strict=True):
                keep = g_row != IGNORE_INDEX
                y_true.append([names[x] for x in g_row[keep]])
                y_pred.append([names[x] for x in p_row[keep]])
            return {
                "f1": float(f1_score(y_true, y_pred)),
                "precision": float(precision_score(y_true, y_pred)),
                "recall": float(recall_score(y_true, y_pred)),
                "accuracy": float(accuracy_score(y_true, y_pred)),
            }

        return metrics
