"""A chat record split into the conversation a model answers and its reference reply, and a code reply
cut down to the completion a HumanEval-style program runs: the text views every scorer of replies uses
(eval, templated eval, HumanEval, continual scoring)."""

from __future__ import annotations

import re
from typing import Any

from instructkit.records import Record


def split_chat(rec: Record, i: int) -> tuple[list[dict[str, str]], str | None]:
    """(prompt conversation up to the last user turn, the assistant reply after it or None)."""
    if rec.messages is None:
        raise ValueError(f"record {i} ({rec.id}) is a {rec.kind} record; generation eval needs chat records")
    msgs = [m.to_dict() for m in rec.messages]
    users = [j for j, m in enumerate(msgs) if m["role"] == "user"]
    if not users:
        raise ValueError(f"record {i} ({rec.id}) has no user turn to answer")
    last = users[-1]
    ref = next((m["content"] for m in msgs[last + 1 :] if m["role"] == "assistant"), None)
    return msgs[: last + 1], ref


_FENCE = re.compile(r"```(?:[Pp]ython3?|py)?[ \t]*\n(.*?)(?:```|$)", re.S)


def extract_completion(reply: str, problem: dict[str, Any]) -> str:
    """The completion to append to the problem's prompt.

    Rule: take the first fenced code block (or the whole reply when there is none). If it defines the
    entry-point function, it is appended after the prompt as a new top-level definition (the prompt's own
    docstring-only function is a valid body that the new one replaces); otherwise it is taken as the body
    that continues the prompt.
    """
    m = _FENCE.search(reply)
    code = m.group(1) if m else reply
    if re.search(rf"^\s*def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.M):
        return "\n" + code
    return code
