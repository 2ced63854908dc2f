"""Answer parsers: a model's free-text reply read back into the task's value.

An instruction template (``tasks/templates.py``) names the parser that reads replies to its prompt, so the
format a template teaches and the rule that reads it live side by side, and scoring uses the same parser
as the data was written for (evaluate may reuse these in place of its own reply rules). Each parser is
registered by name and called as ``parse(reply, options=None, record=None)``: ``options`` is the option
set the prompt offered (the labels, the entity types), ``record`` the task record the prompt was rendered
from (the relation parser reads the entities' text from it). The rules, one per parser:

* ``label`` (classification): case, punctuation and spacing do not count; the whole reply equal to an
  option wins, else the option found earliest as whole words ("Answer: Positive!" -> ``positive``; at the
  same offset the longer option wins, "very positive" over "positive"); none found -> ``None``. Without
  options: the reply with a leading ``Answer:``/``Label:`` and trailing punctuation removed.
* ``entities`` (NER): the answer format is ``TYPE: text; TYPE: text`` (``;`` or new lines between
  entities, an optional ``-``/``*`` bullet before each) or ``none``; a list of ``(type, text)`` pairs in
  reply order. With options, a type is matched to an option case-insensitively and an item whose type is
  no option is dropped; an item without ``:`` is dropped.
* ``relation``: see :func:`parse_relation` (a label with its direction, ``Component-Whole(e2,e1)``).
* ``span`` (QA): the reply stripped of white space, a leading ``Answer:`` and matching quotes around it;
  a reply saying there is no answer ("unanswerable", "no answer", ...) -> ``""``. The span is not checked
  against the context: a span that is not in it is returned as it is (scoring counts it wrong).
* ``text`` (translation, summarization): the reply stripped, without a leading label such as
  ``Translation:``, ``French translation:``, ``Summary:`` or ``TL;DR:``.
* ``reply`` (dialogue): the reply stripped.
* ``code``: the body of the first fenced block (```` ```python ... ``` ````; an unclosed fence runs to the
  end), else the whole reply stripped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

Parser = Callable[..., Any]

PARSERS: dict[str, Parser] = {}
"""Parser name -> function ``(reply, options=None, record=None)``."""


class ParserError(ValueError):
    """An unknown parser name; the message lists the known ones."""


def register_parser(name: str) -> Callable[[Parser], Parser]:
    """Register ``fn`` as the parser called ``name`` (a second one under the same name is a bug)."""

    def deco(fn: Parser) -> Parser:
        if name in PARSERS:
            raise ValueError(f"parser {name!r} is registered twice")
        PARSERS[name] = fn
        return fn

    return deco


def parser_names() -> list[str]:
    return sorted(PARSERS)


def get_parser(name: str) -> Parser:
    """The parser called ``name``; an unknown name is a :class:`ParserError` listing the known ones."""
    try:
        return PARSERS[name]
    except KeyError:
        raise ParserError(f"unknown parser {name!r} (known: {', '.join(parser_names())})") from None


def parse_reply(
    parser: str, reply: str, options: Sequence[str] | None = None, record: dict[str, Any] | None = None
) -> Any:
    """Read ``reply`` with the parser called ``parser``."""
    return get_parser(parser)(reply, options=options, record=record)


# ----------------------------------------------------------------------------------------------- helpers
def normalize(text: str) -> str:
    """Casefold, punctuation (Unicode category P*, so ``_`` and ``-`` too) to spaces, spacing collapsed."""
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in str(text).casefold())
    return " ".join(text.split())


def _is_cjk(c: str) -> bool:
    return unicodedata.east_asian_width(c) == "W" and c.isalpha()


def _whole_word_at(text: str, norm: str) -> int | None:
    """Offset of the first occurrence of ``norm`` in ``text`` bounded by the text's edge or a space on each
    side (a CJK edge needs no boundary: those scripts put no space between words)."""
    if not norm:
        return None
    start = text.find(norm)
    while start != -1:
        end = start + len(norm)
        left = start == 0 or text[start - 1] == " " or _is_cjk(text[start - 1]) or _is_cjk(norm[0])
        right = end == len(text) or text[end] == " " or _is_cjk(text[end]) or _is_cjk(norm[-1])
        if left and right:
            return start
        start = text.find(norm, start + 1)
    return None


def find_option(reply: str, options: Sequence[str]) -> str | None:
    """The option ``reply`` names (the ``label`` rule): whole reply equal to an option, else the option
    found earliest as whole words, the longer one at the same offset; ``None`` when none is named."""
    text = normalize(reply)
    normed = [(normalize(o), o) for o in options]
    for norm, option in normed:
        if norm and text == norm:
            return option
    best: tuple[int, int, str] | None = None
    for norm, option in normed:
        at = _whole_word_at(text, norm)
        if at is not None and (best is None or (at, -len(norm)) < best[:2]):
            best = (at, -len(norm), option)
    return None if best is None else best[2]


_LEAD_LABEL = re.compile(r"^\s*(?:answer|label|category|class)\s*[:\-]\s*", re.IGNORECASE)


# ------------------------------------------------------------------------------------------------ parsers
@register_parser("label")
def parse_label(reply: str, options: Sequence[str] | None = None, record: Any = None) -> str | None:
    """Classification: the option the reply names, or ``None`` (see the module docstring)."""
    if options:
        return find_option(reply, [str(o) for o in options])
    text = _LEAD_LABEL.sub("", reply.strip()).strip()
    text = text.rstrip(".!?;:, ").strip()
    return text or None


_NONE_REPLIES = {"none", "no entities", "no entity", "nothing", "n a", "no named entities", "empty"}
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def says_none(reply: str) -> bool:
    """Whether an NER reply says the text has no entity ("none", "No entities.", ...): an empty entity
    list that is an answer, not a reply the ``entities`` parser could not read."""
    return normalize(reply) in _NONE_REPLIES


@register_parser("entities")
def parse_entities(
    reply: str, options: Sequence[str] | None = None, record: Any = None
) -> list[tuple[str, str]]:
    """NER: ``TYPE: text; TYPE: text`` or ``none`` -> ``[(type, text), ...]`` (see the module docstring)."""
    if says_none(reply):
        return []
    by_fold = {str(o).casefold(): str(o) for o in options or []}
    out: list[tuple[str, str]] = []
    for item in re.split(r"[;\n]", reply):
        item = _BULLET.sub("", item).strip()
        if ":" not in item:
            continue
        kind, _, text = item.partition(":")
        kind, text = kind.strip().strip("*").strip(), text.strip().strip("\"'").rstrip(".").strip()
        if not kind or not text:
            continue
        if options:
            if kind.casefold() not in by_fold:
                continue
            kind = by_fold[kind.casefold()]
        out.append((kind, text))
    return out


_DIRECTION = re.compile(r"\(\s*e\s*([12])\s*,\s*e\s*([12])\s*\)", re.IGNORECASE)


def split_direction(label: str) -> tuple[str, str | None]:
    """``Component-Whole(e2,e1)`` -> ``("Component-Whole", "(e2,e1)")``; a label without one -> ``(label,
    None)``."""
    m = _DIRECTION.search(label)
    if not m or m.group(1) == m.group(2):
        return label.strip(), None
    return (label[: m.start()] + label[m.end() :]).strip(), f"(e{m.group(1)},e{m.group(2)})"


def _flip(direction: str) -> str:
    return "(e2,e1)" if direction == "(e1,e2)" else "(e1,e2)"


def _first_at(text: str, needle: str) -> int | None:
    at = text.casefold().find(needle.casefold()) if needle.strip() else -1
    return None if at < 0 else at


@register_parser("relation")
def parse_relation(
    reply: str, options: Sequence[str] | None = None, record: dict[str, Any] | None = None
) -> str | None:
    """Relation: the relation label with its direction, or ``None`` when the reply names no relation.

    The rule:

    1. the relation's name is found as in ``label``, matched against the options' names with any
       ``(e1,e2)``/``(e2,e1)`` removed (without options, the reply's own words before a direction);
    2. the direction is the one the reply writes (``(e2,e1)``), else ``(e1,e2)``, read relative to the
       order in which the reply names the two entities: when the reply names both the head's and the
       tail's text (from ``record``) and the tail comes first, the direction flips ("car and engine:
       Component-Whole(e1,e2)" for head ``engine`` and tail ``car`` is ``Component-Whole(e2,e1)``);
    3. the answer is the option with that name and direction; an option with that name and no direction
       (``Other``) is the answer whatever the direction. A name whose options lack the parsed direction
       still gives the name with that direction (not an option, so scored wrong).
    """
    explicit = _DIRECTION.search(reply)
    direction = (
        f"(e{explicit.group(1)},e{explicit.group(2)})"
        if explicit and explicit.group(1) != explicit.group(2)
        else "(e1,e2)"
    )
    if record:
        head, tail = str(record.get("head") or ""), str(record.get("tail") or "")
        h, t = _first_at(reply, head), _first_at(reply, tail)
        nested = head.casefold() in tail.casefold() or tail.casefold() in head.casefold()
        if h is not None and t is not None and not nested and t < h:
            direction = _flip(direction)
    if not options:
        name = split_direction(reply)[0]
        name = _LEAD_LABEL.sub("", name).strip().rstrip(".!?;:, ").strip()
        if not name:
            return None
        return name if normalize(name) in ("other", "none", "no relation") else name + direction
    by_name: dict[str, dict[str | None, str]] = {}
    for option in options:
        name, d = split_direction(str(option))
        by_name.setdefault(name, {})[d] = str(option)
    name = find_option(_DIRECTION.sub(" ", reply), list(by_name))
    if name is None:
        return None
    variants = by_name[name]
    if None in variants:
        return variants[None]
    return variants.get(direction) or f"{name}{direction}"


_NO_ANSWER = {
    "unanswerable",
    "no answer",
    "not answerable",
    "there is no answer",
    "cannot be answered",
    "can not be answered",
    "it cannot be answered",
    "the question cannot be answered",
    "no answer in the context",
    "none",
    "n a",
    "unknown",
}
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "`": "`"}


@register_parser("span")
def parse_span(reply: str, options: Any = None, record: Any = None) -> str:
    """QA: the answer span (see the module docstring); ``""`` for a reply that says there is none."""
    text = _LEAD_LABEL.sub("", reply.strip()).strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    if normalize(text) in _NO_ANSWER:
        return ""
    return text


_TEXT_LABEL = re.compile(
    r"^\s*(?:[\w-]+\s+)?(?:translation|translated text|summary|summarization|tl\s*;?\s*dr|answer)\s*:\s*",
    re.IGNORECASE,
)


@register_parser("text")
def parse_text(reply: str, options: Any = None, record: Any = None) -> str:
    """Translation and summarization: the reply without a leading ``Translation:``/``Summary:`` label."""
    return _TEXT_LABEL.sub("", reply.strip(), count=1).strip()


@register_parser("reply")
def parse_dialogue_reply(reply: str, options: Any = None, record: Any = None) -> str:
    """Dialogue: the reply stripped."""
    return reply.strip()


_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


@register_parser("code")
def parse_code(reply: str, options: Any = None, record: Any = None) -> str:
    """Code: the first fenced block's body (an unclosed fence runs to the end), else the reply stripped."""
    m = _FENCE.search(reply)
    if m:
        return m.group(1).strip("\n").rstrip()
    return reply.strip()


__all__ = [
    "PARSERS",
    "ParserError",
    "find_option",
    "get_parser",
    "normalize",
    "parse_reply",
    "parser_names",
    "register_parser",
    "says_none",
    "split_direction",
]
