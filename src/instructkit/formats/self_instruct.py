"""Self-Instruct task files: ``{"instruction", "instances": [{"input", "output"}], "is_classification"}``.

Each instance becomes one record; ``meta.group`` holds the task id so that writing groups consecutive
instances of one task back into one task object.
"""

from __future__ import annotations

from typing import Any

from instructkit.formats.base import Format, get_str, join_prompt, register, require_chat, require_object
from instructkit.records import Message, Record, RecordError


@register
class SelfInstruct(Format):
    name = "self-instruct"
    description = "instruction + instances[{input, output}] + is_classification"

    @classmethod
    def detect(cls, row: Any) -> bool:
        return isinstance(row, dict) and "instruction" in row and "instances" in row

    @classmethod
    def parse(cls, row: Any) -> list[Record]:
        row = require_object(row)
        instruction = get_str(row, "instruction")
        instances = row.get("instances")
        if not isinstance(instances, list):
            raise RecordError("wrong_type", "'instances' must be a list", field="instances")
        if not instances:
            raise RecordError("empty_conversation", "the task has no instances", field="instances")
        is_cls = row.get("is_classification", False)
        if not isinstance(is_cls, bool):
            raise RecordError("wrong_type", "'is_classification' must be true or false", field="is_classification")
        group = row.get("id")
        records = []
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise RecordError("wrong_type", "each instance must be an object", field=f"instances[{i}]")
            try:
                extra = get_str(inst, "input", required=False)
                output = get_str(inst, "output")
            except RecordError as e:
                raise RecordError(e.reason, e.message, field=f"instances[{i}].{e.field}") from None
            meta: dict[str, Any] = {"is_classification": is_cls}
            if group is not None:
                meta["group"] = str(group)
                meta["id"] = f"{group}#{i}"
            if row.get("name"):
                meta["task"] = row["name"]
            msgs = [Message("user", join_prompt(instruction, extra)), Message("assistant", output)]
            try:
                records.append(Record(messages=msgs, meta=meta).validated())
            except RecordError as e:
                raise RecordError(e.reason, e.message, field=f"instances[{i}]") from None
        return records

    @classmethod
    def dump(cls, records: list[Record]) -> list[Any]:
        rows: list[dict[str, Any]] = []
        for rec in records:
            messages = require_chat(rec, cls.name)
            if len(messages) != 2:
                raise RecordError("unsupported", "self-instruct holds one instruction and one output per instance")
            group = rec.meta.get("group")
            instance = {"input": "", "output": messages[1].content}
            last = rows[-1] if rows else None
            if (
                group is not None
                and last is not None
                and last.get("id") == group
                and last["instruction"] == messages[0].content
                and last["is_classification"] == bool(rec.meta.get("is_classification", False))
                and rec.meta.get("id") == f"{group}#{len(last['instances'])}"
            ):
                last["instances"].append(instance)
                continue
            row: dict[str, Any] = {}
            if group is not None:
                row["id"] = group
            if rec.meta.get("task"):
                row["name"] = rec.meta["task"]
            row["instruction"] = messages[0].content
            row["instances"] = [instance]
            row["is_classification"] = bool(rec.meta.get("is_classification", False))
            rows.append(row)
        return rows
