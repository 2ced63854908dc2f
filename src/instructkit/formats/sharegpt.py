"""ShareGPT: ``conversations`` of ``{"from": ..., "value": ...}`` turns.

Roles ``human``/``gpt``/``system`` (also ``user``/``assistant``); an optional top-level ``system``
string and ``id``. Written back with ``human``/``gpt``/``system``.
"""

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
from instructkit.records import Message, Record, RecordError, parse_messages

ROLE_MAP = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "system": "system",
}
WRITE_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


@register
class ShareGPT(Format):
    name = "sharegpt"
    detect_priority = 50
    description = "conversations: [{from: human|gpt|system, value}]"

    @classmethod
    def detect(cls, row: Any) -> bool:
        return isinstance(row, dict) and "conversations" in row

    @classmethod
    def parse(cls, row: Any) -> list[Record]:
        row = require_object(row)
        if "conversations" not in row:
            raise RecordError(
                "missing_field", "missing required field 'conversations'", field="conversations"
            )
        messages = parse_messages(row["conversations"], "conversations", ("from", "value"), ROLE_MAP)
        names = [f"conversations[{j}]" for j in range(len(messages))]
        system = get_str(row, "system", required=False)
        if system:
            names.insert(0, "system")
            if messages[0].role == "system":
                raise RecordError("misplaced_system", "both a 'system' key and a system turn", field="system")
            messages.insert(0, Message("system", system))
        meta = pick_meta(row, id="id", task="task")
        return [validated(Record(messages=messages, meta=meta), names, {"role": "from", "content": "value"})]

    @classmethod
    def dump_one(cls, record: Record) -> dict[str, Any]:
        messages = require_chat(record, cls.name)
        out: dict[str, Any] = {}
        if record.meta.get("id") is not None:
            out["id"] = record.meta["id"]
        out["conversations"] = [{"from": WRITE_ROLE[m.role], "value": m.content} for m in messages]
        if record.meta.get("task") is not None:
            out["task"] = record.meta["task"]
        return out
