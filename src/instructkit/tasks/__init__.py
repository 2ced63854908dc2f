"""Task records (labeled NLP data), the instruction templates that render them and the parsers that read a
model's reply back into the task's value."""

from instructkit.tasks.records import (
    TASK_SCHEMAS,
    TaskRead,
    TaskSchema,
    convert_semeval_markers,
    get_task_schema,
    read_task_records,
    task_names,
    validate_task_record,
)

__all__ = [
    "TASK_SCHEMAS",
    "TaskRead",
    "TaskSchema",
    "convert_semeval_markers",
    "get_task_schema",
    "read_task_records",
    "task_names",
    "validate_task_record",
]
