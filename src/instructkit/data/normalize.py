"""Normalization that never changes meaning: Unicode NFC, one newline convention, no trailing spaces,
no invisible characters, no role labels pasted into turn text."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from instructkit.data.base import Mapper, register
from instructkit.records import Message, Record

INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
ROLE_PREFIX = {
    "user": re.compile(r"^\s*(?:user|human|### instruction|instruction)\s*:\s*", re.IGNORECASE),
    "assistant": re.compile(
        r"^\s*(?:assistant|gpt|chatgpt|ai|bot|### response|response)\s*:\s*", re.IGNORECASE
    ),
}


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(INVISIBLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))  # indentation kept: code depends on it
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n").strip()


@register
@dataclass
class Normalize(Mapper):
    """NFC, newlines, trailing spaces, invisible characters; optionally strip role labels like 'Assistant:'."""

    name = "normalize"
    strip_role_prefixes: bool = True
    """Remove a leading role label ("Assistant:", "### Response:") that repeats the turn's role."""

    def apply(self, record: Record) -> Record:
        if record.messages is not None:
            msgs = []
            for m in record.messages:
                content = normalize_text(m.content)
                if self.strip_role_prefixes and m.role in ROLE_PREFIX:
                    stripped = ROLE_PREFIX[m.role].sub("", content, count=1)
                    content = stripped if stripped.strip() else content
                msgs.append(Message(m.role, content))
            return Record(messages=msgs, meta=record.meta)
        if record.tokens is not None:
            tokens = [unicodedata.normalize("NFC", t) for t in record.tokens]
            return Record(tokens=tokens, tags=record.tags, meta=record.meta)
        return Record(text=normalize_text(record.text or ""), label=record.label, meta=record.meta)
