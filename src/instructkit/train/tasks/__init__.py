"""Task heads, one module each, registered by name."""

from instructkit.train.tasks import causal_lm, masked_lm, seq_cls, token_cls  # noqa: F401
from instructkit.train.tasks.base import TASKS, LabelInfo, Task, TaskDataError

__all__ = ["TASKS", "LabelInfo", "Task", "TaskDataError"]
