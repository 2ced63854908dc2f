"""Task records: one typed record per NLP application, read from labeled datasets.

A labeled dataset (TREC, CoNLL-2003, SemEval-2010 Task 8, SQuAD, WMT, CNN/DailyMail, HumanEval, ...)
holds its examples under its own column names. A task record is the same example under the task's
field names (``classification``: ``text`` + ``label``; ``relation``: ``text``, ``head``, ``tail``,
``relation``; ...), checked once here so the templates that render a record into a prompt and a
reference answer, and the parsers that read a reply back, can rely on its shape.

    TASK_SCHEMAS["relation"].fields                  # ('text', 'head', 'tail', 'relation')
    validate_task_record("classification", {"sentence": "Hi", "coarse_label": 3},
                         field_map={"text": "sentence", "label": "coarse_label"})
    read = read_task_records("train.parquet", "qa")  # read.records, read.rejects, read.n_in

Files are read with the container readers of :mod:`instructkit.formats` (JSONL, JSON array, Parquet,
CoNLL text; optionally gzipped), so a bad row is a reject naming file, line and field like any other
reader's, and ``n_in == len(records) + len(rejects)`` always.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.formats import FORMATS, format_names, resolve_path
from instructkit.formats.io import (
    Row,
    container_of,
    iter_json_array,
    iter_jsonl,
    iter_parquet,
    iter_text_blocks,
    read_bytes,
)
from instructkit.records import Record, RecordError, parse_messages, validate_conversation

# ``fmt`` for read_task_records: a container forced over detection, or a registered instruction format
# whose records (CoNLL's tokens+tags, ShareGPT's chats) are then read as task records.
CONTAINERS = ("jsonl", "json", "parquet")

RELATION_OFFSETS = ("head_start", "head_end", "tail_start", "tail_end")


@dataclass(frozen=True)
class TaskSchema:
    """What one task's records hold: required ``fields``, ``optional`` ones, a one-line ``doc`` and
    one valid ``example`` record in the normalized shape :func:`validate_task_record` returns."""

    name: str
    fields: tuple[str, ...]
    optional: tuple[str, ...]
    doc: str
    example: dict[str, Any]

    @property
    def all_fields(self) -> tuple[str, ...]:
        return self.fields + self.optional


# ------------------------------------------------------------------------------ SemEval markers
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
class _Fields:
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


def _classification(f: _Fields) -> dict[str, Any]:
    out = {
        "text": _string("text", f.get("text"), f.column("text")),
        "label": _label("label", f.get("label"), f.column("label")),
    }
    if f.has("text_pair"):
        out["text_pair"] = _string("text_pair", f.get("text_pair"), f.column("text_pair"))
    return out


def _ner(f: _Fields) -> dict[str, Any]:
    tokens = _string_list("tokens", f.get("tokens"), f.column("tokens"), allow_empty=False)
    tags = _string_list("tags", f.get("tags"), f.column("tags"), allow_empty=False)
    # The project's tokens+tags rules (same length, no whitespace in a token, O or B-/I-/E-/S- tags)
    # live in Record's validation; a task record keeps to them so it converts to a Record and back.
    Record(tokens=tokens, tags=tags).validated()
    return {"tokens": tokens, "tags": tags}


def _relation(f: _Fields) -> dict[str, Any]:
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


def _qa(f: _Fields) -> dict[str, Any]:
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


def _translation(f: _Fields) -> dict[str, Any]:
    return {k: _string(k, f.get(k), f.column(k)) for k in ("source", "target", "source_lang", "target_lang")}


def _summarization(f: _Fields) -> dict[str, Any]:
    return {k: _string(k, f.get(k), f.column(k)) for k in ("document", "summary")}


def _dialogue(f: _Fields) -> dict[str, Any]:
    messages = parse_messages(f.get("messages"), "messages", ("role", "content"))
    validate_conversation(messages, "messages")
    return {"messages": [m.to_dict() for m in messages]}


def _code(f: _Fields) -> dict[str, Any]:
    # HumanEval names the tests 'test'; read it as 'tests' when the row has no 'tests' column and the
    # field map does not say where the tests are.
    if not f.has("tests") and "tests" not in f.columns and f.row.get("test") is not None:
        f = _Fields(f.row, {**f.columns, "tests": "test"})
    # the same for its reference completion, 'canonical_solution': what an instruction template answers with
    if not f.has("solution") and "solution" not in f.columns and f.row.get("canonical_solution") is not None:
        f = _Fields(f.row, {**f.columns, "solution": "canonical_solution"})
    out = {k: _string(k, f.get(k), f.column(k)) for k in ("prompt", "tests", "entry_point")}
    if f.has("solution"):
        out["solution"] = _string("solution", f.get("solution"), f.column("solution"))
    return out


_NORMALIZERS = {
    "classification": _classification,
    "ner": _ner,
    "relation": _relation,
    "qa": _qa,
    "translation": _translation,
    "summarization": _summarization,
    "dialogue": _dialogue,
    "code": _code,
}


# ------------------------------------------------------------------------------ the schemas
def _relation_example() -> dict[str, Any]:
    # The first sentence of SemEval-2010 Task 8's training set, converted the way a marked row is.
    text, head, tail, offsets = convert_semeval_markers(
        "The system as described above has its greatest application in an arrayed "
        "<e1>configuration</e1> of antenna <e2>elements</e2>."
    )
    return {"text": text, "head": head, "tail": tail, "relation": "Component-Whole(e2,e1)", **offsets}


TASK_SCHEMAS: dict[str, TaskSchema] = {
    s.name: s
    for s in (
        TaskSchema(
            "classification",
            ("text", "label"),
            ("text_pair",),
            "Assign a label to a text (or to a pair of texts: entailment, paraphrase).",
            {"text": "How far is it from Denver to Aspen ?", "label": "NUM"},
        ),
        TaskSchema(
            "ner",
            ("tokens", "tags"),
            (),
            "Tag each token with its entity type (BIO tags, one per token).",
            {
                "tokens": ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
                "tags": ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"],
            },
        ),
        TaskSchema(
            "relation",
            ("text", "head", "tail", "relation"),
            RELATION_OFFSETS,
            "Name the relation between two entities (head, tail) mentioned in a text.",
            _relation_example(),
        ),
        TaskSchema(
            "qa",
            ("context", "question", "answers"),
            (),
            "Answer a question from a context; no answers means the context does not answer it.",
            {
                "context": "The Normans were the people who in the 10th and 11th centuries gave their "
                "name to Normandy, a region in France.",
                "question": "In what country is Normandy located?",
                "answers": ["France"],
            },
        ),
        TaskSchema(
            "translation",
            ("source", "target", "source_lang", "target_lang"),
            (),
            "Translate a text from the source language into the target language.",
            {
                "source": "Das Haus ist wunderbar.",
                "target": "The house is wonderful.",
                "source_lang": "de",
                "target_lang": "en",
            },
        ),
        TaskSchema(
            "summarization",
            ("document", "summary"),
            (),
            "Summarize a document.",
            {
                "document": "The city council voted on Tuesday to extend the tram line to the airport. "
                "Construction starts next spring and is expected to take three years; the council "
                "says the line will carry 20,000 passengers a day once it opens.",
                "summary": "The council approved a three-year tram extension to the airport, starting next spring.",
            },
        ),
        TaskSchema(
            "dialogue",
            ("messages",),
            (),
            "Continue a conversation: system/user/assistant turns ending with the assistant.",
            {
                "messages": [
                    {"role": "user", "content": "What is the boiling point of water at sea level?"},
                    {"role": "assistant", "content": "100 degrees Celsius (212 degrees Fahrenheit)."},
                ]
            },
        ),
        TaskSchema(
            "code",
            ("prompt", "tests", "entry_point"),
            ("solution",),
            "Complete a function from its signature and docstring; tests check the completion.",
            {
                "prompt": 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b.\n\n'
                '    >>> add(2, 3)\n    5\n    """\n',
                "tests": "def check(candidate):\n    assert candidate(2, 3) == 5\n"
                "    assert candidate(-1, 1) == 0\n",
                "entry_point": "add",
                "solution": "    return a + b\n",
            },
        ),
    )
}


def task_names() -> list[str]:
    """The task names, in the order of :data:`TASK_SCHEMAS`."""
    return list(TASK_SCHEMAS)


def get_task_schema(task: str) -> TaskSchema:
    """The schema of ``task``; an unknown name is a ValueError naming the known ones."""
    try:
        return TASK_SCHEMAS[task]
    except KeyError:
        raise ValueError(f"unknown task '{task}'; choose one of: {', '.join(task_names())}") from None


def _check_field_map(schema: TaskSchema, field_map: dict[str, str] | None) -> dict[str, str]:
    if not field_map:
        return {}
    accepted = schema.all_fields
    for key, column in field_map.items():
        if key not in accepted:
            raise ValueError(
                f"--field {key}={column}: '{key}' is not a field of the {schema.name} task "
                f"(its fields: {', '.join(accepted)})"
            )
        if not isinstance(column, str) or not column:
            raise ValueError(f"--field {key}=...: the column must be a non-empty name, got {column!r}")
    return dict(field_map)


def validate_task_record(
    task: str, row: dict[str, Any] | Record, field_map: dict[str, str] | None = None
) -> dict[str, Any]:
    """Check one row as a ``task`` record and return it normalized: a plain dict with the task's field
    names (schema order, optional fields where present) plus ``meta`` if the row had one.

    ``field_map`` maps task fields to the row's columns (``{"text": "sentence"}``); columns it does
    not name are read under the task field's own name, other columns are ignored. A :class:`Record`
    (CoNLL's tokens+tags, a chat) is read through its dict layout. A missing, null, empty or wrongly
    typed field raises :class:`RecordError` whose ``field`` is the task field's name; an unknown task
    or a field map naming no field of the task is a ValueError.
    """
    schema = get_task_schema(task)
    columns = _check_field_map(schema, field_map)
    if isinstance(row, Record):
        row = row.to_dict()
    if not isinstance(row, dict):
        raise RecordError("wrong_type", f"a task record must be an object, got {type(row).__name__}")
    meta = row.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise RecordError("wrong_type", "'meta' must be an object", field="meta")
    out = _NORMALIZERS[task](_Fields(row, columns))
    if meta is not None:
        out["meta"] = dict(meta)
    return out


# ------------------------------------------------------------------------------ reading files
@dataclass
class TaskRead:
    """What :func:`read_task_records` read: the kept ``records``, the ``rejects`` (``reason``,
    ``message``, ``field``, ``file``, ``line``, ``index``, ``raw``) and ``n_in``, the records read;
    ``n_in == len(records) + len(rejects)``."""

    records: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    n_in: int = 0

    def reject(self, err: RecordError, raw: Any) -> None:
        entry = err.to_dict()
        entry["raw"] = raw
        self.rejects.append(entry)
        self.n_in += 1


def _check_fmt(fmt: str | None) -> None:
    if fmt is not None and fmt not in CONTAINERS and fmt not in FORMATS:
        raise ValueError(
            f"unknown format '{fmt}'; choose a container ({', '.join(CONTAINERS)}) or a format "
            f"({', '.join(format_names())})"
        )


def _container(path: Path, data: bytes, fmt: str | None) -> str:
    if fmt in CONTAINERS:
        return fmt
    if fmt is not None and FORMATS[fmt].container == "text":
        return "text"
    return container_of(path, data)


def _rows(data: bytes, truncated: bool, path: Path, container: str) -> Iterator[Row | RecordError]:
    if container == "parquet":
        yield from iter_parquet(path, data)
    elif container == "json":
        yield from iter_json_array(data, truncated)
    elif container == "jsonl":
        yield from iter_jsonl(data, truncated)
    else:
        yield from iter_text_blocks(data, truncated)


def read_task_records(
    paths: str | Path | Iterable[str | Path],
    task: str,
    field_map: dict[str, str] | None = None,
    fmt: str | None = None,
) -> TaskRead:
    """Read every row of one or more files as ``task`` records; bad rows become rejects, never raise.

    The container (JSONL, JSON array, Parquet, column text; each optionally gzipped) is told from the
    content unless ``fmt`` names one (``jsonl``, ``json``, ``parquet``). Rows of JSON and Parquet files
    are task rows under ``field_map``; a text file is CoNLL (tokens+tags records, for ``ner``). ``fmt``
    may also name an instruction format (``conll``, ``sharegpt``, ...): its parser turns each row into
    records, which are then read as task records (a ShareGPT chat as ``dialogue``).

    Each kept record's ``meta`` gets ``source`` (the file, as given) and ``row`` (the 0-based row of
    that file), so a record rendered from it can name where it came from. A missing file is a
    FileNotFoundError; an unknown task, format or field-map key a ValueError.
    """
    # Arguments first: a bad field map would otherwise surface only at the first row, after reading.
    _check_field_map(get_task_schema(task), field_map)
    _check_fmt(fmt)
    if isinstance(paths, str | Path):
        paths = [paths]
    paths = [resolve_path(p) for p in paths]
    for p in paths:  # before reading any, so a typo in the last path does not waste the first's read
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    parser = FORMATS[fmt] if fmt is not None and fmt not in CONTAINERS else None
    out = TaskRead()
    for path in paths:
        source = str(path)
        data, truncated = read_bytes(path)
        container = _container(path, data, fmt)
        # Rows of a text file are blocks of lines, which only a format's parser makes records of;
        # CoNLL is the text format there is.
        row_parser = parser or (FORMATS["conll"] if container == "text" else None)
        for item in _rows(data, truncated, path, container):
            if isinstance(item, RecordError):
                out.reject(item.located(file=source), item.raw)
                continue
            raw = item.raw or item.data
            rows: list[Any] = [item.data]
            if row_parser is not None:
                try:
                    rows = list(row_parser.parse(item.data))
                except RecordError as e:
                    out.reject(e.located(file=source, line=item.line, index=item.index), raw)
                    continue
            for row in rows:
                try:
                    rec = validate_task_record(task, row, field_map)
                except RecordError as e:
                    out.reject(e.located(file=source, line=item.line, index=item.index), raw)
                    continue
                rec["meta"] = {**rec.get("meta", {}), "source": source, "row": item.index}
                out.records.append(rec)
                out.n_in += 1
    return out


__all__ = [
    "TASK_SCHEMAS",
    "TaskRead",
    "TaskSchema",
    "convert_semeval_markers",
    "get_task_schema",
    "read_task_records",
    "task_names",
    "validate_task_record",
]
