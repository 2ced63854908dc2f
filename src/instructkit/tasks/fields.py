"""A task record's fields checked and normalised, one function per task (``NORMALIZERS``): each value's
type, a label as text, offsets as integers, SemEval's ``<e1>``/``<e2>`` markers converted to plain text
with offsets; a bad value is a ``RecordError`` naming the task field and the column it came from.
``records.py`` holds the schemas and reads files through these."""

from __future__ import annotations

import re
from typing import Any

from instructkit.records import Record, RecordError, parse_messages, validate_conversation

# ``fmt`` for read_task_records: a container forced over detection, or a registered instruction format
# whose records (CoNLL's tokens+tags, ShareGPT's chats) are then read as task records.
CONTAINERS = ("jsonl", "json", "parquet")

RELATION_OFFSETS = ("head_start", "head_end", "tail_start", "tail_end")


_MARKER_RE = re.compile(r"</?e[12]>")


def convert_semeval_markers(text: str) -> tuple[str, str, str, dict[str, int]]:
    """Strip SemEval-2010 Task 8 entity markers from ``text``.

    ``"The <e1>U.S.</e1> army sent a <e2>"big" box</e2>."`` becomes ``("The U.S. army sent a "big"
    box.", "U.S.", '"big" box', offsets)``: head is the ``<e1>`` span, tail the ``<e2>`` span, every
    character outside the four markers is kept as it was, and ``offsets`` holds ``head_start``,
    ``head_end``, ``tail_start``, ``tail_end`` in the clean text (``clean[head_start:head_end] ==
    head``), since a classifier that marks the entities needs their positions, not just their strings.
    Each marker must appear exactly once, open before close, and the two spans must not overlap or be
    empty; otherwise a :class:`RecordError` (``bad_markers``, field ``text``).
    """
    seen: dict[str, int] = {}
    pieces: list[str] = []
    pos = 0
    length = 0  # length of the clean text built so far
    for m in _MARKER_RE.finditer(text):
        pieces.append(text[pos : m.start()])
        length += m.start() - pos
        pos = m.end()
        tag = m.group()
        if tag in seen:
            raise RecordError("bad_markers", f"the marker {tag} appears more than once", field="text")
        seen[tag] = length
    pieces.append(text[pos:])
    missing = [t for t in ("<e1>", "</e1>", "<e2>", "</e2>") if t not in seen]
    if missing:
        raise RecordError(
            "bad_markers", f"the entity markers are incomplete: {', '.join(missing)} missing", field="text"
        )
    clean = "".join(pieces)
    spans = {}
    for n in ("1", "2"):
        start, end = seen[f"<e{n}>"], seen[f"</e{n}>"]
        if end < start:
            raise RecordError("bad_markers", f"</e{n}> comes before <e{n}>", field="text")
        if not clean[start:end].strip():
            raise RecordError("bad_markers", f"the <e{n}> entity is empty", field="text")
        spans[n] = (start, end)
    (h0, h1), (t0, t1) = spans["1"], spans["2"]
    if h0 < t1 and t0 < h1:
        raise RecordError("bad_markers", "the <e1> and <e2> spans overlap", field="text")
    offsets = {"head_start": h0, "head_end": h1, "tail_start": t0, "tail_end": t1}
    return clean, clean[h0:h1], clean[t0:t1], offsets


# ------------------------------------------------------------------------------ field checks
def _string(task_field: str, value: Any, column: str) -> str:
    if not isinstance(value, str):
        raise RecordError(
            "wrong_type",
            f"'{column}' must be a string, got {type(value).__name__}",
            field=task_field,
        )
    if not value.strip():
        raise RecordError("empty_content", f"'{column}' is empty", field=task_field)
    return value


def _label(task_field: str, value: Any, column: str) -> str:
    # Labels from a dataset's class column arrive as ints (a ClassLabel's index) or strings; both are
    # stored as strings so a template and a parser compare one type. A float is refused: 1.0 may be a
    # regression target, and "1.0" would never match the label "1".
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _string(task_field, value, column)


def _string_list(task_field: str, value: Any, column: str, allow_empty: bool) -> list[str]:
    if not isinstance(value, list):
        raise RecordError(
            "wrong_type",
            f"'{column}' must be a list of strings, got {type(value).__name__}",
            field=task_field,
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise RecordError(
                "wrong_type",
                f"'{column}[{i}]' must be a string, got {type(item).__name__}",
                field=f"{task_field}[{i}]",
            )
    if not value and not allow_empty:
        raise RecordError("empty_content", f"'{column}' is empty", field=task_field)
    return list(value)


def _offset(task_field: str, value: Any, column: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(
            "wrong_type", f"'{column}' must be an integer, got {type(value).__name__}", field=task_field
        )
    return value


# ------------------------------------------------------------------------------ per-task normalizers
# Each takes the row seen through the field map and returns the task record's fields in schema order,
# raising a RecordError whose field is the task field's name (the dataset's column is in the message).
class Fields:
    """The row seen through the field map: ``get`` names the task field in errors, the column in
    messages."""

    def __init__(self, row: dict[str, Any], columns: dict[str, str]):
        self.row = row
        self.columns = columns

    def column(self, name: str) -> str:
        return self.columns.get(name, name)

    def has(self, name: str) -> bool:
        return self.row.get(self.column(name)) is not None

    def get(self, name: str) -> Any:
        col = self.column(name)
        if self.row.get(col) is None:  # JSON null is as good as absent (Parquet drops nulls anyway)
            shown = f"'{col}'" if col == name else f"'{col}' (mapped to '{name}')"
            raise RecordError("missing_field", f"the record has no {shown}", field=name)
        return self.row[col]


def _classification(f: Fields) -> dict[str, Any]:
    out = {
        "text": _string("text", f.get("text"), f.column("text")),
        "label": _label("label", f.get("label"), f.column("label")),
    }
    if f.has("text_pair"):
        out["text_pair"] = _string("text_pair", f.get("text_pair"), f.column("text_pair"))
    return out


def _ner(f: Fields) -> dict[str, Any]:
    tokens = _string_list("tokens", f.get("tokens"), f.column("tokens"), allow_empty=False)
    tags = _string_list("tags", f.get("tags"), f.column("tags"), allow_empty=False)
    # The project's tokens+tags rules (same length, no whitespace in a token, O or B-/I-/E-/S- tags)
    # live in Record's validation; a task record keeps to them so it converts to a Record and back.
    Record(tokens=tokens, tags=tags).validated()
    return {"tokens": tokens, "tags": tags}


def _relation(f: Fields) -> dict[str, Any]:
    text = _string("text", f.get("text"), f.column("text"))
    relation = _string("relation", f.get("relation"), f.column("relation"))
    if _MARKER_RE.search(text):
        text, head, tail, offsets = convert_semeval_markers(text)
        for name, found in (("head", head), ("tail", tail)):
            if f.has(name) and f.get(name) != found:
                raise RecordError(
                    "marker_mismatch",
                    f"'{f.column(name)}' is {f.get(name)!r} but the text's markers give {found!r}",
                    field=name,
                )
        return {"text": text, "head": head, "tail": tail, "relation": relation, **offsets}
    head = _string("head", f.get("head"), f.column("head"))
    tail = _string("tail", f.get("tail"), f.column("tail"))
    offsets = {}
    for name, span in (("head", head), ("tail", tail)):
        start_key, end_key = f"{name}_start", f"{name}_end"
        if f.has(start_key) or f.has(end_key):
            start = _offset(start_key, f.get(start_key), f.column(start_key))
            end = _offset(end_key, f.get(end_key), f.column(end_key))
            if text[start:end] != span or start < 0:
                raise RecordError(
                    "wrong_offset",
                    f"text[{start}:{end}] is {text[start:end]!r}, not the {name} {span!r}",
                    field=start_key,
                )
        else:
            start = text.find(span)
            if start < 0:
                raise RecordError(
                    "not_in_text", f"the {name} {span!r} does not occur in the text", field=name
                )
            end = start + len(span)
        offsets[start_key], offsets[end_key] = start, end
    return {"text": text, "head": head, "tail": tail, "relation": relation, **offsets}


def _qa(f: Fields) -> dict[str, Any]:
    context = _string("context", f.get("context"), f.column("context"))
    question = _string("question", f.get("question"), f.column("question"))
    answers = f.get("answers")
    col = f.column("answers")
    if isinstance(answers, dict):
        # SQuAD's layout: {"text": [...], "answer_start": [...]}; the texts are the answers.
        if "text" not in answers:
            raise RecordError("missing_field", f"'{col}' is an object without 'text'", field="answers")
        answers = answers["text"]
        col = f"{col}.text"
    elif isinstance(answers, str):  # a dataset with one answer per question
        answers = [answers]
    return {
        "context": context,
        "question": question,
        "answers": _string_list("answers", answers, col, allow_empty=True),
    }


def _translation(f: Fields) -> dict[str, Any]:
    return {k: _string(k, f.get(k), f.column(k)) for k in ("source", "target", "source_lang", "target_lang")}


def _summarization(f: Fields) -> dict[str, Any]:
    return {k: _string(k, f.get(k), f.column(k)) for k in ("document", "summary")}


def _dialogue(f: Fields) -> dict[str, Any]:
    messages = parse_messages(f.get("messages"), "messages", ("role", "content"))
    validate_conversation(messages, "messages")
    return {"messages": [m.to_dict() for m in messages]}


def _code(f: Fields) -> dict[str, Any]:
    # HumanEval names the tests 'test'; read it as 'tests' when the row has no 'tests' column and the
    # field map does not say where the tests are.
    if not f.has("tests") and "tests" not in f.columns and f.row.get("test") is not None:
        f = Fields(f.row, {**f.columns, "tests": "test"})
    # the same for its reference completion, 'canonical_solution': what an instruction template answers with
    if not f.has("solution") and "solution" not in f.columns and f.row.get("canonical_solution") is not None:
        f = Fields(f.row, {**f.columns, "solution": "canonical_solution"})
    out = {k: _string(k, f.get(k), f.column(k)) for k in ("prompt", "tests", "entry_point")}
    if f.has("solution"):
        out["solution"] = _string("solution", f.get("solution"), f.column("solution"))
    return out


NORMALIZERS = {
    "classification": _classification,
    "ner": _ner,
    "relation": _relation,
    "qa": _qa,
    "translation": _translation,
    "summarization": _summarization,
    "dialogue": _dialogue,
    "code": _code,
}
