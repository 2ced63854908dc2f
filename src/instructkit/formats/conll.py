"""CoNLL columns: one token per line, the token first and its tag last, a blank line between
sentences; ``-DOCSTART-`` lines are skipped.

Tags may be BIO (IOB2) or IOB1 (where ``I-`` may open an entity and ``B-`` only splits two adjacent
entities of one type). Records always hold IOB2: an ``I-X`` that opens an entity becomes ``B-X``,
which is the same set of entities under either reading.
"""

from __future__ import annotations

import re
from typing import Any

from instructkit.formats.base import Format, register
from instructkit.records import Record, RecordError

TAG_RE = re.compile(r"^(O|[BIES]-\S+)$")


def to_iob2(tags: list[str]) -> list[str]:
    out = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


@register
class CoNLL(Format):
    name = "conll"
    detect_priority = 80
    container = "text"
    description = "token ... tag columns, blank line between sentences (BIO or IOB1)"

    @classmethod
    def detect(cls, row: Any) -> bool:
        if not isinstance(row, list) or not all(isinstance(x, tuple) and len(x) == 2 for x in row):
            return False  # text blocks are (line number, line) tuples; a JSON list is not CoNLL
        lines = [line for _, line in row if not line.startswith("-DOCSTART-")]
        return bool(lines) and all(
            len(line.split()) >= 2 and TAG_RE.match(line.split()[-1]) for line in lines
        )

    @classmethod
    def parse(cls, row: Any) -> list[Record]:
        tokens, tags = [], []
        first_line = row[0][0]
        for n, line in row:
            if line.startswith("-DOCSTART-"):
                continue
            cols = line.split()
            if len(cols) < 2:
                raise RecordError(
                    "missing_tag",
                    f"line {n} has {len(cols)} column(s); expected a token and a tag",
                    field=f"tokens[{len(tokens)}]",
                    line=n,
                )
            tag = cols[-1]
            if not TAG_RE.match(tag):
                raise RecordError(
                    "bad_tag", f"tag {tag!r} is not O or B-/I-/E-/S-TYPE", field=f"tags[{len(tags)}]", line=n
                )
            tokens.append(cols[0])
            tags.append(tag)
        if not tokens:
            return []
        rec = Record(tokens=tokens, tags=to_iob2(tags), meta={})
        try:
            return [rec.validated()]
        except RecordError as e:
            raise e.located(line=first_line) from None

    @classmethod
    def dump(cls, records: list[Record]) -> list[str]:
        blocks = []
        for rec in records:
            if rec.tokens is None:
                raise RecordError("unsupported", f"conll holds tokens+tags, not {rec.kind} records")
            blocks.append(
                "".join(f"{tok}\t{tag}\n" for tok, tag in zip(rec.tokens, rec.tags or [], strict=True))
            )
        return blocks
