"""What a template sees when it renders a task record: the record's fields (absent optional ones as
``none``), the option set, and per task a few derived values (:data:`CONTEXT_DOC`: ``entities`` and
``entity_answer`` for NER, ``marked_text`` for relations, ``answer`` for QA, ``transcript`` and ``reply``
for dialogue, language names for translation), plus what scoring keeps beside the reference answer
(:func:`scoring_meta`). ``templates.py`` compiles and renders; this module only builds the context."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from instructkit.tasks.records import TASK_SCHEMAS, task_names


class TemplateError(ValueError):
    """A template cannot be used: unknown name or task, a syntax error, or a render the sandbox refused or
    that met an undefined value. The message is one line naming the template."""


OPTION_TASKS = ("classification", "ner", "relation")
"""Tasks whose prompts may offer options (labels, entity types, relations) taken from the data."""

NO_ANSWER = "unanswerable"
"""The reference answer of a QA record with no answer (the ``span`` parser reads it back as ``""``)."""

CONTEXT_DOC: dict[str, str] = {
    "options": "the option set (template's own, else from the data), a list; empty when the task has none",
    "entities": "ner: the entities as a list of {type, text} in sentence order",
    "entity_answer": "ner: the entities as 'TYPE: text; TYPE: text', or 'none'",
    "sentence": "ner: the tokens joined by spaces",
    "entity_types": "ner: the option set again (entity types), for readability",
    "marked_text": "relation: the text with <e1>head</e1> and <e2>tail</e2> marked at their offsets",
    "relation_name": "relation: the relation without its direction ('Component-Whole')",
    "answer": "qa: the first answer, or 'unanswerable' when there is none",
    "transcript": "dialogue: the turns before the last reply, one 'User: ...'/'Assistant: ...' line each",
    "reply": "dialogue: the last assistant turn (the reference answer)",
    "last_user": "dialogue: the last user turn before the reply",
    "source_language": "translation: source_lang as a language name ('de' -> 'German'; other values as they are)",
    "target_language": "translation: target_lang as a language name",
    "solution": "code: the record's solution when it has one, else none (no instruction record then)",
}
"""The derived values a template sees besides the record's own fields (``instructkit templates show``)."""


LANGUAGES: dict[str, str] = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish", "et": "Estonian",
    "fi": "Finnish", "fr": "French", "gu": "Gujarati", "hi": "Hindi", "it": "Italian", "ja": "Japanese",
    "kk": "Kazakh", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese",
}  # fmt: skip
"""Language codes (WMT's) a translation template can show as names."""


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(type, start, end)`` token spans of BIO/IOBES tags (an ``I-`` that does not continue its type
    starts an entity)."""
    out: list[tuple[str, int, int]] = []
    kind: str | None = None
    start = 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, t = tag.partition("-")
        continues = kind is not None and t == kind and prefix in ("I", "E")
        if kind is not None and not continues:
            out.append((kind, start, i))
            kind = None
        if prefix in ("B", "S") or (prefix in ("I", "E") and kind is None):
            kind, start = t, i
        if prefix in ("E", "S") and kind is not None:
            out.append((kind, start, i + 1))
            kind = None
    return out


def entities_of(tokens: Sequence[str], tags: Sequence[str]) -> list[tuple[str, str]]:
    """``[(type, text)]`` of a tagged sentence, in order (the ``entities`` parser's value)."""
    return [(k, " ".join(tokens[s:e])) for k, s, e in spans(tags)]


def entity_answer(entities: Sequence[tuple[str, str]]) -> str:
    """The NER answer format the ``entities`` parser reads: ``PER: Maria Lopez; ORG: Nordwind`` or ``none``."""
    return "; ".join(f"{k}: {t}" for k, t in entities) or "none"


def mark_entities(text: str, hs: int, he: int, ts: int, te: int) -> str:
    """``text`` with ``<e1>``…``</e1>`` around the head span and ``<e2>``…``</e2>`` around the tail span."""
    marks = sorted(
        [(hs, "<e1>"), (he, "</e1>"), (ts, "<e2>"), (te, "</e2>")], key=lambda m: (m[0], m[1][1] != "/")
    )
    out, at = [], 0
    for pos, mark in marks:
        out.append(text[at:pos])
        out.append(mark)
        at = pos
    out.append(text[at:])
    return "".join(out)


def _turns(messages: Any) -> list[dict[str, str]]:
    out = []
    for m in messages or []:
        if isinstance(m, dict):
            out.append({"role": str(m.get("role")), "content": str(m.get("content"))})
        else:
            out.append({"role": str(m.role), "content": str(m.content)})
    return out


def task_options(task: str, rows: Iterable[dict[str, Any]]) -> list[str]:
    """The option set of ``task`` in ``rows``: sorted labels (classification), relations (relation) or
    entity types (NER); empty for the other tasks."""
    found: set[str] = set()
    for row in rows:
        if task == "classification" and row.get("label") is not None:
            found.add(str(row["label"]))
        elif task == "relation" and row.get("relation") is not None:
            found.add(str(row["relation"]))
        elif task == "ner":
            found.update(k for k, _, _ in spans(row.get("tags") or []))
    return sorted(found)


def task_value(task: str, row: dict[str, Any]) -> Any:
    """The value a parser should read back from the reference answer of ``row`` (for checks and
    scoring): the label, the entity list, the relation, the first answer (``""`` for none), the target,
    the summary, the last reply, the solution."""
    if task == "classification":
        return str(row["label"])
    if task == "ner":
        return entities_of(row["tokens"], row["tags"])
    if task == "relation":
        return str(row["relation"])
    if task == "qa":
        answers = row.get("answers") or []
        return str(answers[0]) if answers else ""
    if task == "translation":
        return str(row["target"])
    if task == "summarization":
        return str(row["summary"])
    if task == "dialogue":
        turns = _turns(row.get("messages"))
        return turns[-1]["content"] if turns else ""
    if task == "code":
        return str(row.get("solution") or row.get("canonical_solution") or "")
    raise TemplateError(unknown_task(task))


def context_names(task: str) -> list[str]:
    """The names a template of ``task`` can use: the record's fields, ``options`` and the task's derived
    values (:data:`CONTEXT_DOC`)."""
    derived = [k for k, doc in CONTEXT_DOC.items() if k == "options" or doc.startswith(f"{task}:")]
    return [*_schema_fields(task), *derived]


def task_context(task: str, row: dict[str, Any], options: Sequence[str] | None = None) -> dict[str, Any]:
    """What a template of ``task`` sees for ``row``: its fields, ``options`` and the derived values."""
    schema = TASK_SCHEMAS.get(task)
    if schema is None:
        raise TemplateError(unknown_task(task))
    ctx: dict[str, Any] = {k: None for k in _schema_fields(task)}
    ctx.update({k: v for k, v in row.items() if k != "meta"})
    ctx["options"] = [str(o) for o in options] if options else []
    if task == "ner":
        ents = entities_of(row["tokens"], row["tags"])
        ctx["entities"] = [{"type": k, "text": t} for k, t in ents]
        ctx["entity_answer"] = entity_answer(ents)
        ctx["sentence"] = " ".join(row["tokens"])
        ctx["entity_types"] = ctx["options"]
    elif task == "relation":
        from instructkit.tasks.parsers import split_direction

        text = str(row["text"])
        offsets = [row.get(k) for k in ("head_start", "head_end", "tail_start", "tail_end")]
        if all(isinstance(o, int) for o in offsets):
            ctx["marked_text"] = mark_entities(text, *offsets)  # type: ignore[arg-type]
        else:
            ctx["marked_text"] = text
        ctx["relation_name"] = split_direction(str(row["relation"]))[0]
    elif task == "qa":
        answers = row.get("answers") or []
        ctx["answer"] = str(answers[0]) if answers else NO_ANSWER
    elif task == "dialogue":
        turns = _turns(row.get("messages"))
        last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=len(turns))
        history = turns[:last]
        ctx["messages"] = turns
        ctx["history"] = history
        ctx["reply"] = turns[last]["content"] if last < len(turns) else ""
        ctx["last_user"] = next((t["content"] for t in reversed(history) if t["role"] == "user"), "")
        ctx["transcript"] = "\n".join(
            f"{t['role'].capitalize()}: {t['content']}" for t in history if t["role"] != "system"
        )
    elif task == "translation":
        for side in ("source", "target"):
            code = str(row[f"{side}_lang"])
            ctx[f"{side}_language"] = LANGUAGES.get(code.casefold(), code)
    elif task == "code":
        ctx["solution"] = row.get("solution") or row.get("canonical_solution") or None
    return ctx


_OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {"code": ("solution",)}
"""Fields a template may name beyond the schema's: a code record's reference solution, when it has one."""


def _schema_fields(task: str) -> list[str]:
    """The fields a template of ``task`` may name: the schema example's and the optional ones (absent
    ones render as ``none``, so ``{% if text_pair %}`` works under StrictUndefined)."""
    schema = TASK_SCHEMAS[task]
    return [*dict.fromkeys([*schema.all_fields, *_OPTIONAL_FIELDS.get(task, ())])]


def scoring_meta(task: str, row: dict[str, Any]) -> dict[str, Any]:
    """What scoring needs beyond the reference answer, kept in the rendered record's ``meta``: every
    answer of a QA record with more than one (``answers``; a reply matching any is right), and a code
    record's ``problem`` (its ``prompt``, ``tests`` and ``entry_point``: what pass@1 runs a reply with)."""
    if task == "qa":
        answers = [str(a) for a in row.get("answers") or []]
        return {"answers": answers} if len(answers) > 1 else {}
    if task == "code" and row.get("tests") and row.get("entry_point"):
        keys = ("prompt", "tests", "entry_point")
        return {"problem": {k: str(row.get(k) or "") for k in keys}}
    return {}


def unknown_task(task: str) -> str:
    return f"unknown task {task!r} (known: {', '.join(task_names())})"
