"""OpenAI chat fine-tuning format: ``{"messages": [{"role": ..., "content": ...}, ...]}``.

``content`` may also be a list of ``{"type": "text", "text": ...}`` parts; the texts are joined. A
non-text part (an image) is an error: a text model cannot see it.
"""

from __future__ import annotations

from typing import Any

from instructkit.formats.base import Format, register, require_chat, require_object
from instructkit.records import Record, RecordError, parse_messages


def _flatten_parts(turns: Any) -> Any:
    if not isinstance(turns, list):
        return turns
    out = []
    for i, turn in enumerate(turns):
        if isinstance(turn, dict) and isinstance(turn.get("content"), list):
            texts = []
            for j, part in enumerate(turn["content"]):
                if not (
                    isinstance(part, dict)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                ):
                    raise RecordError(
                        "non_text_content",
                        "only text content parts are supported",
                        field=f"messages[{i}].content[{j}]",
                    )
                texts.append(part["text"])
            turn = {**turn, "content": "".join(texts)}
        out.append(turn)
    return out


@register
class OpenAIChat(Format):
    name = "openai"
    detect_priority = 60
    description = "messages: [{role: system|user|assistant, content}]"

    @classmethod
    def detect(cls, row: Any) -> bool:
        return isinstance(row, dict) and "messages" in row and "meta" not in row

    @classmethod
    def parse(cls, row: Any) -> list[Record]:
        row = require_object(row)
        if "messages" not in row:
            raise RecordError("missing_field", "missing required field 'messages'", field="messages")
        messages = parse_messages(_flatten_parts(row["messages"]), "messages", ("role", "content"))
        return [Record(messages=messages).validated()]

    @classmethod
    def dump_one(cls, record: Record) -> dict[str, Any]:
        return {"messages": [m.to_dict() for m in require_chat(record, cls.name)]}
