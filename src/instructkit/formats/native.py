"""instructkit's own layout: the canonical record as JSON (``messages`` | ``tokens``+``tags`` |
``text``+``label``, plus ``meta``). The only format that holds every record kind and all of meta."""

from __future__ import annotations

from typing import Any

from instructkit.formats.base import Format, register
from instructkit.records import Record


@register
class Native(Format):
    name = "instructkit"
    detect_priority = 10
    description = "canonical records: messages | tokens+tags | text+label, with meta"

    @classmethod
    def detect(cls, row: Any) -> bool:
        if not isinstance(row, dict):
            return False
        return "meta" in row or "tokens" in row or ("text" in row and set(row) <= {"text", "label", "meta"})

    @classmethod
    def parse(cls, row: Any) -> list[Record]:
        return [Record.from_dict(row)]

    @classmethod
    def dump_one(cls, record: Record) -> dict[str, Any]:
        return record.to_dict()
