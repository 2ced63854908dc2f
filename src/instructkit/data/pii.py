"""Simple PII: e-mail addresses, phone numbers and secret keys — masked, flagged or dropped.

Regular expressions, deliberately conservative (a phone number needs 9+ digits with phone-like
separators; a key needs a known prefix or an explicit ``key=``/``token:`` label) so ordinary numbers and
code survive. This is not a full PII scrubber; names and addresses are not touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from instructkit.config import checked
from instructkit.data.base import Drop, Mapper, register
from instructkit.records import Message, Record

PATTERNS = {
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    "phone": re.compile(
        r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){2,4}(?![\w.])"
    ),
    "key": re.compile(
        r"\b(?:sk-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abpr]-[A-Za-z0-9-]{10,})\b"
        r"|(?i:(?:api[_-]?key|secret|token|password)\s*[:=]\s*['\"]?)[A-Za-z0-9_\-./+]{12,}"
    ),
}
MASKS = {"email": "[EMAIL]", "phone": "[PHONE]", "key": "[KEY]"}


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def find_pii(text: str) -> list[tuple[str, str]]:
    found = []
    for kind, pattern in PATTERNS.items():
        for m in pattern.finditer(text):
            if kind == "phone" and _digits(m.group()) < 9:
                continue
            found.append((kind, m.group()))
    return found


def mask_pii(text: str) -> str:
    for kind, pattern in PATTERNS.items():
        if kind == "phone":
            text = pattern.sub(lambda m: MASKS["phone"] if _digits(m.group()) >= 9 else m.group(), text)
        else:
            text = pattern.sub(MASKS[kind], text)
    return text


@register
@dataclass
class PII(Mapper):
    """E-mails, phone numbers, keys: ``action`` mask (replace with [EMAIL]/[PHONE]/[KEY]), flag
    (list the kinds in meta.pii) or drop (reject the record, reason ``pii``)."""

    name = "pii"
    action: str = checked("mask", choices=("mask", "flag", "drop"))
    """mask: replace with [EMAIL]/[PHONE]/[KEY]; flag: list the kinds in meta.pii; drop: reject the record."""

    def apply(self, record: Record) -> Record:
        texts = [m.content for m in record.messages] if record.messages is not None else [record.text or ""]
        if record.tokens is not None:
            texts = [" ".join(record.tokens)]
        kinds = sorted({k for t in texts for k, _ in find_pii(t)})
        if not kinds:
            return record
        if self.action == "drop":
            raise Drop("pii", ",".join(kinds))
        if self.action == "flag" or record.tokens is not None:
            return Record(
                record.messages,
                record.tokens,
                record.tags,
                record.text,
                record.label,
                {**record.meta, "pii": kinds},
            )
        if record.messages is not None:
            return Record(
                messages=[Message(m.role, mask_pii(m.content)) for m in record.messages], meta=record.meta
            )
        return Record(text=mask_pii(record.text or ""), label=record.label, meta=record.meta)
