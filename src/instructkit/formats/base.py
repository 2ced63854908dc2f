"""What an instruction format is: detect a raw row, parse it into records, dump a record back."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from instructkit.records import Message, Record, RecordError

FORMATS: dict[str, type[Format]] = {}


def register(cls: type[Format]) -> type[Format]:
    FORMATS[cls.name] = cls
    return cls


class Format:
    """One outside format. Subclasses set ``name`` and implement ``detect``, ``parse`` and ``dump``.

    ``container`` is ``"json"`` for formats whose rows are JSON objects (JSONL, JSON array, Parquet)
    and ``"text"`` for column formats (CoNLL).
    """

    name: ClassVar[str]
    container: ClassVar[str] = "json"
    description: ClassVar[str] = ""
    detect_priority: ClassVar[int] = 100
    """Place in detection: lower asks first (ties by name). It matters where keys overlap: self-instruct
    (20) before alpaca (30), as both have 'instruction'; a new format slots in by its number."""

    @classmethod
    def detect(cls, row: Any) -> bool:
        raise NotImplementedError

    @classmethod
    def parse(cls, row: Any) -> list[Record]:
        """Raw row to records (most formats: one; Self-Instruct: one per instance)."""
        raise NotImplementedError

    @classmethod
    def dump(cls, records: list[Record]) -> list[Any]:
        """Records to raw rows. Raises RecordError('unsupported', ...) for a record the format can't hold."""
        return [cls.dump_one(r) for r in records]

    @classmethod
    def dump_one(cls, record: Record) -> Any:
        raise NotImplementedError


def require_object(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise RecordError("wrong_type", f"a record must be a JSON object, got {type(row).__name__}")
    return row


def get_str(row: dict[str, Any], key: str, *, required: bool = True, default: str = "") -> str:
    if key not in row or row[key] is None:
        if required:
            raise RecordError("missing_field", f"missing required field '{key}'", field=key)
        return default
    value = row[key]
    if not isinstance(value, str):
        raise RecordError("wrong_type", f"'{key}' must be a string, got {type(value).__name__}", field=key)
    return value


def join_prompt(instruction: str, extra: str) -> str:
    """Instruction plus optional input/context, as one user turn (the Alpaca/Dolly convention)."""
    return f"{instruction}\n\n{extra}" if extra.strip() else instruction


def pick_meta(row: dict[str, Any], **keys: str) -> dict[str, Any]:
    """Copy ``row[src]`` into ``meta[dst]`` for each ``dst=src`` present and not None or empty."""
    return {dst: row[src] for dst, src in keys.items() if row.get(src) not in (None, "")}


def require_chat(record: Record, fmt: str) -> list[Message]:
    if record.messages is None:
        raise RecordError("unsupported", f"{fmt} holds conversations, not {record.kind} records")
    return record.messages


def split_system(messages: list[Message]) -> tuple[str | None, list[Message]]:
    if messages and messages[0].role == "system":
        return messages[0].content, messages[1:]
    return None, messages


MESSAGE_FIELD = re.compile(r"^messages\[(\d+)\](?:\.(\w+))?$")


def remap_field(err: RecordError, names: list[str], sub: dict[str, str] | None = None) -> RecordError:
    """Name the format's own field in an error raised on the canonical ``messages[i].x``.

    ``names[i]`` is the field that turn ``i`` came from (``conversations[1]``, ``completion``); ``sub``
    maps ``role``/``content`` to that format's keys (``from``/``value``); without it the whole field is named.
    """
    m = MESSAGE_FIELD.match(err.field or "")
    if not m or int(m.group(1)) >= len(names):
        return err
    field = names[int(m.group(1))]
    if sub and m.group(2) in sub:
        field = f"{field}.{sub[m.group(2)]}"
    return RecordError(err.reason, err.message, field=field, file=err.file, line=err.line, index=err.index)


def validated(record: Record, names: list[str], sub: dict[str, str] | None = None) -> Record:
    try:
        return record.validated()
    except RecordError as e:
        raise remap_field(e, names, sub) from None
