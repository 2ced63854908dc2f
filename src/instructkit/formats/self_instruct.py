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
    detect_priority = 20
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
            raise RecordError(
                "wrong_type", "'is_classification' must be true or false", field="is_classification"
            )
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
        # Consecutive instances of one task (same meta.group, ids group#0, group#1, ...) go back into
        # one task object; the instruction is the longest shared prefix that ends at a blank line.
        groups: list[list[Record]] = []
        for rec in records:
            messages = require_chat(rec, cls.name)
            if len(messages) != 2:
                raise RecordError(
                    "unsupported", "self-instruct holds one instruction and one output per instance"
                )
            group = rec.meta.get("group")
            last = groups[-1] if groups else None
            if (
                group is not None
                and last is not None
                and last[0].meta.get("group") == group
                and bool(last[0].meta.get("is_classification")) == bool(rec.meta.get("is_classification"))
                and rec.meta.get("id") == f"{group}#{len(last)}"
                and _shared_instruction([r.messages[0].content for r in [*last, rec]]) is not None
            ):
                last.append(rec)
            else:
                groups.append([rec])
        rows = []
        for members in groups:
            first = members[0]
            prompts = [r.messages[0].content for r in members]
            instruction = _shared_instruction(prompts) or prompts[0]
            row: dict[str, Any] = {}
            if first.meta.get("group") is not None and first.meta.get("id") == f"{first.meta['group']}#0":
                row["id"] = first.meta["group"]
            if first.meta.get("task"):
                row["name"] = first.meta["task"]
            row["instruction"] = instruction
            row["instances"] = [
                {
                    "input": p[len(instruction) + 2 :] if p != instruction else "",
                    "output": r.messages[1].content,
                }
                for p, r in zip(prompts, members, strict=True)
            ]
            row["is_classification"] = bool(first.meta.get("is_classification", False))
            rows.append(row)
        return rows


def _shared_instruction(prompts: list[str]) -> str | None:
    """The longest P with every prompt == P or starting with P + blank line; None when there is none."""
    if len(prompts) == 1:
        return prompts[0]
    first = prompts[0]
    cuts = [len(first)] + [i for i in range(len(first) - 1, -1, -1) if first.startswith("\n\n", i)]
    for cut in cuts:
        p = first[:cut]
        if p.strip() and all(q == p or q.startswith(p + "\n\n") for q in prompts):
            return p
    return None
