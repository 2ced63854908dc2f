"""Record filters, each with its reason code. Every one is a ``keep(record)`` and nothing else."""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cached_property
from typing import Any

from instructkit.config import checked
from instructkit.data.base import Filter, StepConfigError, register
from instructkit.records import Record

# Replies that refuse or talk about being an AI instead of doing the task (casefolded substrings).
# Kept short and specific: each phrase is boilerplate in open instruction sets, rarely a real answer.
REFUSAL_PHRASES = (
    "as an ai language model",
    "as a language model",
    "as an ai assistant, i",
    "as an ai, i",
    "i'm sorry, but i cannot",
    "i'm sorry, but i can't",
    "i am sorry, but i cannot",
    "i cannot fulfill",
    "i can't fulfill",
    "i cannot assist with",
    "i can't assist with",
    "i'm unable to provide",
    "i am unable to provide",
    "i cannot provide",
    "i do not have personal opinions",
    "i don't have personal opinions",
    "i don't have the ability to",
    "my knowledge cutoff",
    "my training data",
    "trained by openai",
    "openai's content policy",
    "against my programming",
)

# Self-Instruct's filter for tasks a text model cannot see or produce.
MODALITY_WORDS = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)  # fmt: skip


@register
@dataclass
class EmptyTurns(Filter):
    """Drop records with an empty or whitespace-only turn (or text)."""

    name = "empty"
    reason = "empty_turn"

    def keep(self, record: Record) -> bool:
        if record.messages is not None:
            return all(m.content.strip() for m in record.messages)
        if record.tokens is not None:
            return bool(record.tokens)
        return bool((record.text or "").strip())


def _squash(text: str) -> str:
    return " ".join(text.casefold().split())


@register
@dataclass
class OutputEqualsInput(Filter):
    """Drop conversations whose reply repeats the prompt (casefolded, whitespace ignored)."""

    name = "identical"
    reason = "output_equals_input"

    def keep(self, record: Record) -> bool:
        if record.messages is None:
            return True
        for i, m in enumerate(record.messages):
            if m.role == "assistant" and _squash(m.content) == _squash(record.messages[i - 1].content):
                return False
        return True


@register
@dataclass
class Length(Filter):
    """Drop records too short or too long, counted in ``unit`` (words, or tokens of ``tokenizer``)
    over ``field`` (prompt, reply or all)."""

    name = "length"
    min: int = checked(1, ge=0)
    """Fewest units a record may have (fewer: dropped as too_short)."""
    max: int = checked(4096, ge=1)
    """Most units a record may have (more: dropped as too_long)."""
    unit: str = checked("words", choices=("words", "tokens"))
    """What is counted: words (whitespace-separated), or tokens of ``tokenizer``."""
    field: str = checked("all", choices=("prompt", "reply", "all"))
    """Which text is counted: the prompt, the reply, or all of the record."""
    tokenizer: str | None = None
    """unit tokens: the model (alias, folder or hub id) whose tokenizer counts."""

    def validate(self) -> None:
        if self.unit == "tokens" and not self.tokenizer:
            raise StepConfigError("{key} tokens needs 'tokenizer' (a model name)", key="unit")
        if self.min > self.max:
            raise StepConfigError(f"{{key}} ({self.min}) is larger than max ({self.max})", key="min")

    @cached_property
    def _tok(self) -> Any:
        from instructkit.models import load_tokenizer

        return load_tokenizer(self.tokenizer)

    def __getstate__(self) -> dict[str, Any]:  # the tokenizer is rebuilt in each worker process
        state = dict(self.__dict__)
        state.pop("_tok", None)
        return state

    def count(self, text: str) -> int:
        if self.unit == "words":
            return len(text.split())
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def keep(self, record: Record) -> bool | tuple[bool, str]:
        text = {"prompt": Record.prompt_text, "reply": Record.reply_text, "all": Record.all_text}[self.field](
            record
        )
        if self.field == "reply" and record.messages is None:
            return True
        n = self.count(text)
        if n < self.min:
            return False, "too_short"
        if n > self.max:
            return False, "too_long"
        return True


@register
@dataclass
class Refusal(Filter):
    """Drop replies with refusal or "as an AI language model" boilerplate (a maintained phrase list;
    ``phrases`` replaces it, ``extra_phrases`` adds to it)."""

    name = "refusal"
    reason = "refusal"
    phrases: list[str] = dataclass_field(default_factory=lambda: list(REFUSAL_PHRASES))
    """Phrases that mark a refusal, matched casefolded anywhere in the reply (replaces the built-in list)."""
    extra_phrases: list[str] = dataclass_field(default_factory=list)
    """Phrases added to ``phrases``."""

    def keep(self, record: Record) -> bool | tuple[bool, str, str]:
        reply = record.reply_text().casefold().replace("\u2019", "'")
        for phrase in [*self.phrases, *self.extra_phrases]:
            if phrase.casefold() in reply:
                return False, "refusal", phrase
        return True


def instruction_part(record: Record) -> str:
    """The task a record asks for, without the input it works on: the first user turn up to its first
    blank line. Alpaca, Dolly and Self-Instruct records keep instruction and input in one user turn
    joined by a blank line (``formats.base.join_prompt``), so this is their ``instruction``; for a chat
    it is the opening paragraph of the first request."""
    return record.first_instruction().strip().split("\n\n", 1)[0]


@register
@dataclass
class NeedsModality(Filter):
    """Drop instructions that need what a text model cannot see or produce (Self-Instruct's word list:
    image, graph, picture, file, map, draw, plot, ...), matched as whole words in the *instruction* only.

    Self-Instruct filtered the instruction a model generated, never the input it works on: matched over
    whole prompts, the list dropped news articles that mention "music" or "file" and tasks whose input
    abstract mentions "graphs". So only :func:`instruction_part` is searched, and the step is not in the
    default curate pipeline (the generators run it; add it to a curate config to use it there)."""

    name = "modality"
    reason = "needs_modality"
    words: list[str] = dataclass_field(default_factory=lambda: list(MODALITY_WORDS))
    """Words (whole words, any case) in an instruction that ask for another modality."""

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in self.words) + r")\b", re.IGNORECASE)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_pattern", None)
        return state

    def keep(self, record: Record) -> bool | tuple[bool, str, str]:
        if record.messages is None:
            return True
        m = self._pattern.search(instruction_part(record))
        return True if m is None else (False, "needs_modality", m.group().lower())


@register
@dataclass
class Repetition(Filter):
    """Drop degenerate replies: the share of repeated word ``n``-grams (1 - unique/total) above
    ``max_dup_fraction``, or of repeated non-empty lines above ``max_dup_lines``. Replies shorter than
    ``min_words`` are not judged (too little to tell)."""

    name = "repetition"
    reason = "repetition"
    n: int = checked(3, ge=1)
    """Length of the word n-grams counted."""
    max_dup_fraction: float = checked(0.4, ge=0, le=1)
    """Largest share of repeated n-grams a reply may have."""
    max_dup_lines: float = checked(0.5, ge=0, le=1)
    """Largest share of repeated non-empty lines a reply may have (judged from 4 lines up)."""
    min_words: int = checked(20, ge=0)
    """Replies shorter than this are kept unjudged."""

    def keep(self, record: Record) -> bool:
        text = record.reply_text() if record.messages is not None else record.all_text()
        words = text.split()
        if len(words) < self.min_words:
            return True
        grams = [tuple(words[i : i + self.n]) for i in range(len(words) - self.n + 1)]
        if grams and 1 - len(set(grams)) / len(grams) > self.max_dup_fraction:
            return False
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        return not (len(lines) >= 4 and 1 - len(set(lines)) / len(lines) > self.max_dup_lines)


@register
@dataclass
class Language(Filter):
    """Keep only records in ``languages`` (ISO 639-1 codes), identified with py3langid (langid.py's
    model) over ``field`` (prompt by default: a translation task's reply is rightly in another
    language) with code blocks removed. Texts shorter than ``min_chars`` are kept: language ID is
    unreliable there."""

    name = "language"
    languages: list[str] = dataclass_field(default_factory=lambda: ["en"])
    """Languages kept, as ISO 639-1 codes (quote ``"no"``: YAML reads a bare no as false)."""
    field: str = checked("prompt", choices=("prompt", "reply", "all"))
    """Which text is identified: the prompt, the reply, or all of the record."""
    min_chars: int = checked(20, ge=0)
    """Texts shorter than this (code blocks removed) are kept unjudged."""

    def keep(self, record: Record) -> bool | tuple[bool, str, str]:
        import py3langid

        view = {"prompt": Record.prompt_text, "reply": Record.reply_text, "all": Record.all_text}[self.field]
        text = re.sub(r"```.*?```", " ", view(record), flags=re.DOTALL)
        if len(text.strip()) < self.min_chars:
            return True
        lang, _ = py3langid.classify(text)
        return True if lang in self.languages else (False, "wrong_language", lang)
