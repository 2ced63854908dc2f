"""What a task head is: how records become features, which model class, which collator and metric."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from instructkit.records import Record

TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


class TaskDataError(ValueError):
    """The data does not fit the task (a chat record for NER, a missing label, ...); names the record."""


@dataclass
class LabelInfo:
    """Labels read from the training data and saved with the model."""

    names: list[str] = field(default_factory=list)
    problem_type: str | None = None  # HF problem_type for sequence classification

    @property
    def num_labels(self) -> int:
        return max(len(self.names), 1)

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "problem_type": self.problem_type}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> LabelInfo:
        return cls(**(d or {}))


class Task:
    name: ClassVar[str]
    default_metric: ClassVar[str] = "loss"
    greater_is_better: ClassVar[bool] = False

    def labels(self, records: list[Record]) -> LabelInfo:
        return LabelInfo()

    def model_kwargs(self, labels: LabelInfo) -> dict[str, Any]:
        return {}

    def features(
        self, records: list[Record], tokenizer: Any, labels: LabelInfo, max_length: int, **kw: Any
    ) -> tuple[list[dict[str, Any]], Counter]:
        raise NotImplementedError

    def collator(self, tokenizer: Any) -> Any:
        raise NotImplementedError

    def compute_metrics(self, labels: LabelInfo) -> Any:
        return None

    def preprocess_logits(self) -> Any:
        return None


def require_kind(rec: Record, i: int, kinds: tuple[str, ...], task: str) -> None:
    if rec.kind not in kinds:
        raise TaskDataError(
            f"record {i} ({rec.id}) is a {rec.kind} record; {task} needs {' or '.join(kinds)} records"
        )
