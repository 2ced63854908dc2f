"""Prompt/completion pairs: ``{"prompt": ..., "completion": ...}`` (one user turn, one reply)."""

from __future__ import annotations

from typing import Any

from instructkit.formats.base import (
    Format,
    get_str,
    pick_meta,
    register,
    require_chat,
    require_object,
    validated,
)
from instructkit.records import Message, Record, RecordError


@register
class PromptCompletion(Format):
    name = "prompt-completion"
    detect_priority = 70
    description = "prompt/completion pairs"

    @classmethod
    def detect(cls, row: Any) -> bool:
        return isinstance(row, dict) and "prompt" in row and "completion" in row

    @classmethod
    def parse(cls, row: Any) -> list[Record]:
        row = require_object(row)
        messages = [Message("user", get_str(row, "prompt")), Message("assistant", get_str(row, "completion"))]
        return [
            validated(
                Record(messages=messages, meta=pick_meta(row, id="id", task="task")), ["prompt", "completion"]
            )
        ]

    @classmethod
    def dump_one(cls, record: Record) -> dict[str, Any]:
        messages = require_chat(record, cls.name)
        if len(messages) != 2:
            raise RecordError(
                "unsupported", "prompt-completion holds one prompt and one completion (no system, no history)"
            )
        out: dict[str, Any] = {"prompt": messages[0].content, "completion": messages[1].content}
        for key in ("id", "task"):
            if record.meta.get(key) is not None:
                out[key] = record.meta[key]
        return out
