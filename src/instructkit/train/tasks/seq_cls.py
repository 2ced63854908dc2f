"""sequence-classification: text → label. Single-label (string or integer labels), multi-label
(list labels; sigmoid + binary cross-entropy per label), binary (boolean labels; one sigmoid output)
and regression (float labels; mean squared error). The label set is read from the training data."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from instructkit.records import Record
from instructkit.train.tasks.base import LabelInfo, Task, TaskDataError, register


def record_label(rec: Record, i: int) -> Any:
    """The class of record ``i``: ``label`` of a text+label record, ``meta.label`` of a chat used as a
    classification input (whose text is its user turns, :meth:`Record.prompt_text`)."""
    label = rec.label if rec.text is not None else rec.meta.get("label")
    if label is None:
        raise TaskDataError(f"record {i} ({rec.id}) has no label")
    return label


@register
class SequenceClassification(Task):
    name = "sequence-classification"
    default_metric = "accuracy"
    greater_is_better = True
    auto_model = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    has_labels = True
    pools_last_token = True
    evaluation = "classification"
    default_metrics = ("accuracy",)

    def labels(self, records: list[Record]) -> LabelInfo:
        values = [record_label(r, i) for i, r in enumerate(records)]
        if all(isinstance(v, bool) for v in values):
            return LabelInfo(["positive"], "binary")
        if all(isinstance(v, float) for v in values):
            return LabelInfo(["score"], "regression")
        if all(isinstance(v, list) for v in values):
            return LabelInfo(sorted({str(x) for v in values for x in v}), "multi_label_classification")
        return LabelInfo(sorted({str(v) for v in values}), "single_label_classification")

    def model_kwargs(self, labels: LabelInfo) -> dict[str, Any]:
        problem = "multi_label_classification" if labels.problem_type == "binary" else labels.problem_type
        kw: dict[str, Any] = {"num_labels": labels.num_labels, "problem_type": problem}
        if labels.problem_type in ("single_label_classification", "multi_label_classification"):
            kw["id2label"] = dict(enumerate(labels.names))
            kw["label2id"] = {n: i for i, n in enumerate(labels.names)}
        return kw

    def encode_label(self, value: Any, labels: LabelInfo, i: int) -> Any:
        kind = labels.problem_type
        if kind == "binary":
            return [float(bool(value))]
        if kind == "regression":
            return float(value)
        index = {n: j for j, n in enumerate(labels.names)}
        if kind == "multi_label_classification":
            vec = [0.0] * len(labels.names)
            for x in value:
                vec[index[str(x)]] = 1.0
            return vec
        if str(value) not in index:
            raise TaskDataError(
                f"record {i} has label {value!r}, not seen in training ({', '.join(labels.names)})"
            )
        return index[str(value)]

    def features(self, records: list[Record], tokenizer: Any, labels: LabelInfo, max_length: int, **kw: Any):
        out = []
        for i, rec in enumerate(records):
            enc = tokenizer(rec.prompt_text(), truncation=True, max_length=max_length)
            out.append(
                {
                    "input_ids": enc["input_ids"],
                    "attention_mask": enc["attention_mask"],
                    "labels": self.encode_label(record_label(rec, i), labels, i),
                }
            )
        return out, Counter()

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def compute_metrics(self, labels: LabelInfo) -> Any:
        from sklearn.metrics import accuracy_score, f1_score, mean_squared_error

        def metrics(pred) -> dict[str, float]:
            logits, gold = pred.predictions, pred.label_ids
            if labels.problem_type == "regression":
                return {"mse": float(mean_squared_error(gold, logits.reshape(-1)))}
            if labels.problem_type in ("binary", "multi_label_classification"):
                guess = (logits > 0).astype(int)
                return {
                    "accuracy": float((guess == gold).all(axis=1).mean()),
                    "f1": float(f1_score(gold.astype(int), guess, average="micro", zero_division=0)),
                }
            guess = np.argmax(logits, axis=-1)
            return {
                "accuracy": float(accuracy_score(gold, guess)),
                "f1": float(f1_score(gold, guess, average="macro", zero_division=0)),
            }

        return metrics
