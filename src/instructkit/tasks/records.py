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
from instructkit.records import Record, RecordError
from instructkit.tasks.fields import NORMALIZERS, Fields, convert_semeval_markers

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
    out = NORMALIZERS[task](Fields(row, columns))
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
