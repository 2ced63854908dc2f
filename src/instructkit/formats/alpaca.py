"""Alpaca (``instruction``/``input``/``output``) and its Dolly variant (``instruction``/``context``/
``response``/``category``).

Alpaca also takes the optional ``system`` and ``history`` (``[[user, assistant], ...]`` earlier turns)
keys that LLaMA-Factory uses, so multi-turn records survive a round trip. The instruction and its
input become one user turn joined by a blank line; on writing, the whole user turn goes to
``instruction`` (the split cannot be recovered, and the record does not change).
"""

from __future__ import annotations

from typing import Any

from instructkit.formats.base import (
    Format,
    get_str,
    join_prompt,
    pick_meta,
    register,
    require_chat,
    require_object,
    split_system,
    validated,
)
from instructkit.records import Message, Record, RecordError


@register
class Alpaca(Format):
    name = "alpaca"
    detect_priority = 30
    description = "instruction/input/output (+ optional system, history)"

    @classmethod
    def detect(cls, row: Any) -> bool:
        return isinstance(row, dict) and "instruction" in row and "output" in row

    @classmethod
    def parse(cls, row: Any) -> list[Record]:
        row = require_object(row)
        instruction = get_str(row, "instruction")
        extra = get_str(row, "input", required=False)
        output = get_str(row, "output")
        messages: list[Message] = []
        names: list[str] = []
        system = get_str(row, "system", required=False)
        if system:
            messages.append(Message("system", system))
            names.append("system")
        history = row.get("history")
        history = [] if history is None else history
        if not isinstance(history, list):
            raise RecordError(
                "wrong_type", "'history' must be a list of [user, assistant] pairs", field="history"
            )
        for i, pair in enumerate(history):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                raise RecordError(
                    "wrong_type", "each history item must be [user, assistant] strings", field=f"history[{i}]"
                )
            messages += [Message("user", pair[0]), Message("assistant", pair[1])]
            names += [f"history[{i}][0]", f"history[{i}][1]"]
        messages += [Message("user", join_prompt(instruction, extra)), Message("assistant", output)]
        names += ["instruction", "output"]
        meta = pick_meta(row, id="id", task="task")
        return [validated(Record(messages=messages, meta=meta), names)]

    @classmethod
    def dump_one(cls, record: Record) -> dict[str, Any]:
        system, turns = split_system(require_chat(record, cls.name))
        pairs = [[turns[i].content, turns[i + 1].content] for i in range(0, len(turns), 2)]
        out: dict[str, Any] = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
        if system is not None:
            out["system"] = system
        if len(pairs) > 1:
            out["history"] = pairs[:-1]
        for key in ("id", "task"):
            if record.meta.get(key) is not None:
                out[key] = record.meta[key]
        return out


@register
class Dolly(Format):
    name = "dolly"
    detect_priority = 40
    description = "instruction/context/response/category (databricks-dolly)"

    @classmethod
    def detect(cls, row: Any) -> bool:
        return isinstance(row, dict) and "instruction" in row and "response" in row

    @classmethod
    def parse(cls, row: Any) -> list[Record]:
        row = require_object(row)
        user = join_prompt(get_str(row, "instruction"), get_str(row, "context", required=False))
        meta = pick_meta(row, id="id", task="category")
        messages = [Message("user", user), Message("assistant", get_str(row, "response"))]
        return [validated(Record(messages=messages, meta=meta), ["instruction", "response"])]

    @classmethod
    def dump_one(cls, record: Record) -> dict[str, Any]:
        messages = require_chat(record, cls.name)
        if len(messages) != 2 or messages[0].role != "user":
            raise RecordError(
                "unsupported", "dolly holds one user turn and one response (no system, no history)"
            )
        out: dict[str, Any] = {
            "instruction": messages[0].content,
            "context": "",
            "response": messages[1].content,
            "category": record.meta.get("task") or "",
        }
        if record.meta.get("id") is not None:
            out["id"] = record.meta["id"]
        return out
