"""Self-Instruct's filters for generated instructions, as data steps (usable by name in any pipeline).

Followed: ``post_process_gpt3_response`` and the ROUGE-L check in Self-Instruct's
``self_instruct/bootstrap_instructions.py`` (yizhongw/self-instruct). Deliberate differences, each
small: the word count is kept within 3–150 inclusive (the original drops ≤ 3 words; issue #11 specifies
3–150), the ROUGE-L threshold is inclusive (F ≥ 0.7; the original rejects > 0.7, which differs only at
exactly 0.7), and the non-ASCII start check can be switched off for other languages. Every filter looks
at the instruction (:func:`instructkit.data.filters.instruction_part`), never at an instance's input.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from instructkit.config import checked
from instructkit.data.base import DatasetStep, Filter, StepConfigError, Verdict, register
from instructkit.data.filters import NeedsModality, instruction_part
from instructkit.data.similarity import SimilarityIndex
from instructkit.records import Record

# Self-Instruct's list, verbatim: words that ask for what a text model cannot see or produce.
SELF_INSTRUCT_BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to",
)  # fmt: skip


@register
@dataclass
class InstructionWords(Filter):
    """Drop generated instructions shorter than ``min`` or longer than ``max`` words (whitespace-split)."""

    name = "instruction_words"
    min: int = checked(3, ge=0)
    """Fewest words an instruction may have (fewer: too_few_words)."""
    max: int = checked(150, ge=1)
    """Most words an instruction may have (more: too_many_words)."""

    def validate(self) -> None:
        if self.min > self.max:
            raise StepConfigError(f"{{key}} ({self.min}) is larger than max ({self.max})", key="min")

    def keep(self, record: Record) -> bool | tuple[bool, str]:
        n = len(instruction_part(record).split())
        if n < self.min:
            return False, "too_few_words"
        if n > self.max:
            return False, "too_many_words"
        return True


@register
@dataclass
class Blacklist(NeedsModality):
    """Drop generated instructions with a word of Self-Instruct's blacklist (image, graph, picture, file,
    map, draw, plot, go to, ...) as a whole word, any case, in the instruction only."""

    name = "blacklist"
    reason = "blacklisted_word"
    words: list[str] = dataclass_field(default_factory=lambda: list(SELF_INSTRUCT_BLACKLIST))
    """Words (whole words, any case) that drop an instruction."""

    def keep(self, record: Record) -> bool | tuple[bool, str, str]:
        m = self._pattern.search(instruction_part(record))
        return True if m is None else (False, "blacklisted_word", m.group().lower())


@register
@dataclass
class InstructionStart(Filter):
    """Drop instructions that start with punctuation (a list fragment, a stray quote) or, unless
    ``allow_non_ascii``, with a non-ASCII character (Self-Instruct's "non-English" check; switch it off
    for instructions in other languages)."""

    name = "instruction_start"
    allow_non_ascii: bool = False
    """Keep instructions that start with a non-ASCII character (for languages other than English)."""

    def keep(self, record: Record) -> bool | tuple[bool, str, str]:
        text = instruction_part(record)
        if not text:
            return False, "empty_instruction"
        first = text[0]
        if first in string.punctuation:
            return False, "starts_with_punctuation", first
        if not first.isascii() and not self.allow_non_ascii:
            return False, "starts_with_non_ascii", first
        return True


@register
@dataclass
class WriteAProgram(Filter):
    """Drop instructions that start with one of ``prefixes`` ("Write a program": Self-Instruct found
    models append it to existing tasks, leaving unclear whether to write code or give the result)."""

    name = "write_a_program"
    reason = "write_a_program"
    prefixes: list[str] = dataclass_field(default_factory=lambda: ["Write a program"])
    """Prefixes (case-sensitive, as the original) that drop an instruction."""

    def keep(self, record: Record) -> bool:
        text = instruction_part(record)
        return not any(text.startswith(p) for p in self.prefixes)


@register
@dataclass
class RougeNovelty(DatasetStep):
    """Drop instructions whose ROUGE-L F against any seed or earlier kept instruction is ≥ ``threshold``
    (rouge-score's values, exact; pruned by :class:`~instructkit.data.similarity.SimilarityIndex`).
    Kept records get ``meta.most_similar``: their ``k`` nearest instructions with scores. Order matters
    (an instruction is compared with those kept before it), so this is a whole-dataset step."""

    name = "rouge_novelty"
    threshold: float = checked(0.7, ge=0, le=1)
    """Highest ROUGE-L F an instruction may have against any seed or kept instruction (≥: dropped)."""
    k: int = checked(10, ge=0)
    """How many most-similar instructions each kept record keeps in ``meta.most_similar``."""
    seeds: list[str] = dataclass_field(default_factory=list)
    """Instructions every record is compared with (the seed tasks' instructions)."""

    def run(self, records: list[Record], progress: Any = None) -> list[Verdict]:
        index = SimilarityIndex(list(self.seeds))
        verdicts = []
        for rec in records:
            verdicts.append(self.judge(index, instruction_part(rec)))
            if progress is not None:
                progress(1)
        return verdicts

    def judge(self, index: SimilarityIndex, text: str) -> Verdict:
        """The verdict on one instruction against ``index`` (the seeds and those kept so far); a kept one is
        added to the index. Generators call this as candidates arrive, round after round."""
        hit = index.too_similar(text, self.threshold)
        if hit is not None:
            nearest = index.most_similar(text, 1)
            return Verdict("too_similar", f"{hit:.3f} {nearest[0][0] if nearest else ''}".strip())
        top = index.most_similar(text, self.k) if self.k else []
        index.add(text)
        return Verdict(meta={"most_similar": [{"instruction": t, "rouge_l": s} for t, s in top]})


# The order Self-Instruct applies them: cheap text checks first, ROUGE-L last (on what survives).
INSTRUCTION_FILTERS: list[Any] = [
    "instruction_words",
    "blacklist",
    "write_a_program",
    "instruction_start",
    "rouge_novelty",
]
