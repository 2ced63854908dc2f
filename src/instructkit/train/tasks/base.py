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
    """Base class. A subclass sets ``name`` and the capabilities below; everything outside ``train/tasks/``
    asks these attributes instead of comparing task names, so a new head is one module here."""

    name: ClassVar[str]
    default_metric: ClassVar[str] = "loss"
    """Validation metric that picks the best checkpoint (``compute_metrics`` key, or loss)."""
    greater_is_better: ClassVar[bool] = False
    auto_model: ClassVar[str] = "AutoModel"
    """The transformers Auto class that loads this head (``models.load_model(auto_class=...)``)."""
    peft_task_type: ClassVar[str | None] = None
    """PEFT ``TaskType`` name for PEFT methods; None: a plain PeftModel, which forwards everything."""
    has_labels: ClassVar[bool] = False
    """Reads a label set from the training data and puts a new head sized to it on the model; the head
    starts random, so every method trains it in full."""
    generative: ClassVar[bool] = False
    """Generates replies from a chat template (chat, HumanEval, the chat server)."""
    packing: ClassVar[bool] = False
    """Samples can be packed into rows with a block-diagonal mask (``train/packing.py``)."""
    trained_positions_head: ClassVar[bool] = False
    """The LM head may run only at positions whose next token is trained (same loss, less work)."""
    pools_last_token: ClassVar[bool] = False
    """Predicts from one pooled position; on a decoder that is the last non-pad token, found from
    ``input_ids`` and the model's pad id."""
    evaluation: ClassVar[str | None] = None
    """Name of the routine in ``evaluate/scoring.py`` that scores this head (``EVALUATIONS``); None: no eval."""
    default_metrics: ClassVar[tuple[str, ...]] = ()
    """Metrics ``instructkit eval`` reports when none are asked for."""

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
