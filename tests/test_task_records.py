"""Task records: every schema read from JSONL, JSON and Parquet; rejects naming the field with in = kept +
rejected; the field map; SemEval markers converted exactly; SQuAD answers and HumanEval tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instructkit.records import Record, RecordError
from instructkit.tasks import (
    TASK_SCHEMAS,
    convert_semeval_markers,
    read_task_records,
    task_names,
    validate_task_record,
)

from .conftest import FIXTURES

TASKS = [
    "classification",
    "ner",
    "relation",
    "qa",
    "translation",
    "summarization",
    "dialogue",
    "code",
]


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    # from_pylist takes its columns from the first row; give every row every column (null where absent,
    # which the reader drops)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), path)
    return path


def _balanced(read) -> None:
    assert read.n_in == len(read.records) + len(read.rejects)


# ---------------------------------------------------------------------------------------- schemas
def test_schemas_are_the_eight_tasks_and_each_example_is_valid_and_normalized() -> None:
    assert task_names() == TASKS
    for name, schema in TASK_SCHEMAS.items():
        assert schema.name == name
        assert schema.doc and "\n" not in schema.doc
        assert set(schema.fields) <= set(schema.example)
        assert set(schema.example) <= set(schema.fields) | set(schema.optional)
        # the example is already what validation returns, so a template can render it as is
        assert validate_task_record(name, schema.example) == schema.example


def test_relation_example_is_semeval_like_with_offsets() -> None:
    ex = TASK_SCHEMAS["relation"].example
    assert ex["relation"] == "Component-Whole(e2,e1)"
    assert ex["text"][ex["head_start"] : ex["head_end"]] == ex["head"] == "configuration"
    assert ex["text"][ex["tail_start"] : ex["tail_end"]] == ex["tail"] == "elements"
    assert "<e1>" not in ex["text"]


def test_unknown_task_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as e:
        validate_task_record("sentiment", {"text": "x", "label": "pos"})
    for name in TASKS:
        assert name in str(e.value)
    path = _jsonl(tmp_path / "a.jsonl", [{"text": "x", "label": "pos"}])
    with pytest.raises(ValueError, match="classification, ner, relation"):
        read_task_records(path, "sentiment")


# ---------------------------------------------------------------------------------------- every schema from files
def _drop_first_field(task: str) -> tuple[dict[str, Any], str]:
    ex = dict(TASK_SCHEMAS[task].example)
    first = TASK_SCHEMAS[task].fields[0]
    del ex[first]
    return ex, first


@pytest.mark.parametrize("task", TASKS)
def test_every_schema_from_jsonl(tmp_path: Path, task: str) -> None:
    example = TASK_SCHEMAS[task].example
    bad, missing = _drop_first_field(task)
    path = _jsonl(tmp_path / "data.jsonl", [example, bad, example])
    read = read_task_records(path, task)
    assert read.records == [
        {**example, "meta": {"source": str(path), "row": 0}},
        {**example, "meta": {"source": str(path), "row": 2}},
    ]
    [reject] = read.rejects
    assert reject["reason"] == "missing_field"
    assert reject["field"] == missing
    assert reject["file"] == str(path) and reject["line"] == 2
    assert json.loads(reject["raw"]) == bad
    assert read.n_in == 3
    _balanced(read)


@pytest.mark.parametrize("task", TASKS)
def test_every_schema_from_parquet(tmp_path: Path, task: str) -> None:
    example = TASK_SCHEMAS[task].example
    bad, missing = _drop_first_field(task)
    path = _parquet(tmp_path / "data.parquet", [bad, example])
    read = read_task_records(path, task)
    assert read.records == [{**example, "meta": {"source": str(path), "row": 1}}]
    [reject] = read.rejects
    assert (reject["reason"], reject["field"], reject["index"]) == ("missing_field", missing, 0)
    assert reject["file"] == str(path)
    assert read.n_in == 2
    _balanced(read)


def test_json_array_file_names_the_line_of_a_bad_element(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(
        '[\n  {"text": "Who wrote Hamlet ?", "label": "HUM"},\n  {"text": "Where is Aspen ?", "label": 2.5},\n'
        '  {"text": "What is a tram ?", "label": 0, "meta": {"id": "q3"}}\n]\n',
        encoding="utf-8",
    )
    read = read_task_records(path, "classification")
    assert [r["label"] for r in read.records] == ["HUM", "0"]
    assert read.records[1]["meta"] == {"id": "q3", "source": str(path), "row": 2}
    [reject] = read.rejects
    assert (reject["reason"], reject["field"], reject["line"]) == ("wrong_type", "label", 3)
    _balanced(read)


def test_several_files_and_damaged_lines_keep_in_equal_kept_plus_rejected(tmp_path: Path) -> None:
    a = _jsonl(tmp_path / "a.jsonl", [{"document": "A long text.", "summary": "Short."}])
    b = tmp_path / "b.jsonl"
    b.write_text(
        '{"document": "Another text.", "summary": "Brief."}\n{"document": "cut\n[1, 2]\n', encoding="utf-8"
    )
    read = read_task_records([a, b], "summarization")
    assert [(r["meta"]["source"], r["meta"]["row"]) for r in read.records] == [(str(a), 0), (str(b), 0)]
    assert [(r["reason"], r["line"]) for r in read.rejects] == [("malformed_json", 2), ("wrong_type", 3)]
    assert read.n_in == 4
    _balanced(read)


def test_a_missing_file_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    a = _jsonl(tmp_path / "a.jsonl", [TASK_SCHEMAS["qa"].example])
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_task_records([a, tmp_path / "nope.jsonl"], "qa")
    with pytest.raises(FileNotFoundError, match="not a file"):
        read_task_records([a, tmp_path], "qa")


def test_a_gzipped_jsonl_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl.gz"
    example = TASK_SCHEMAS["qa"].example
    path.write_bytes(gzip.compress((json.dumps(example) + "\n").encode("utf-8")))
    assert read_task_records(path, "qa").records == [{**example, "meta": {"source": str(path), "row": 0}}]


# ---------------------------------------------------------------------------------------- missing and mistyped fields
BAD_ROWS = [
    ("classification", {"text": "Hi", "label": 1.0}, "wrong_type", "label"),
    ("classification", {"text": 7, "label": "x"}, "wrong_type", "text"),
    ("classification", {"text": "Hi", "label": "x", "text_pair": ["a"]}, "wrong_type", "text_pair"),
    ("classification", {"text": "   ", "label": "x"}, "empty_content", "text"),
    ("classification", {"text": "Hi", "label": None}, "missing_field", "label"),
    ("ner", {"tokens": ["EU", "rejects"], "tags": ["B-ORG"]}, "length_mismatch", "tags"),
    ("ner", {"tokens": "EU rejects", "tags": ["B-ORG", "O"]}, "wrong_type", "tokens"),
    ("ner", {"tokens": ["EU", 3], "tags": ["B-ORG", "O"]}, "wrong_type", "tokens[1]"),
    ("ner", {"tokens": ["EU"]}, "missing_field", "tags"),
    ("relation", {"text": "a b", "head": "a", "tail": "b"}, "missing_field", "relation"),
    ("relation", {"text": "a b", "head": "a", "tail": "c", "relation": "Other"}, "not_in_text", "tail"),
    ("relation", {"text": "a b", "head": "x", "tail": "b", "relation": "Other"}, "not_in_text", "head"),
    ("relation", {"text": "a b", "head": "a", "tail": "b", "relation": 3}, "wrong_type", "relation"),
    (
        "relation",
        {"text": "a b", "head": "a", "tail": "b", "relation": "Other", "head_start": 1, "head_end": 2},
        "wrong_offset",
        "head_start",
    ),
    ("relation", {"text": "<e1>a</e1> b", "relation": "Other"}, "bad_markers", "text"),
    ("qa", {"context": "c", "question": "q", "answers": 3}, "wrong_type", "answers"),
    ("qa", {"context": "c", "question": "q", "answers": ["ok", 3]}, "wrong_type", "answers[1]"),
    ("qa", {"context": "c", "answers": []}, "missing_field", "question"),
    ("qa", {"context": "c", "question": "q", "answers": {"answer_start": [0]}}, "missing_field", "answers"),
    ("translation", {"source": "a", "target": "b", "source_lang": "de"}, "missing_field", "target_lang"),
    (
        "translation",
        {"source": "a", "target": "b", "source_lang": 1, "target_lang": "en"},
        "wrong_type",
        "source_lang",
    ),
    ("summarization", {"document": "d", "summary": ["s"]}, "wrong_type", "summary"),
    ("dialogue", {"messages": "hello"}, "wrong_type", "messages"),
    ("dialogue", {"messages": [{"role": "user", "content": "hi"}]}, "no_assistant_reply", "messages[0].role"),
    ("dialogue", {"messages": [{"role": "bot", "content": "hi"}]}, "unknown_role", "messages[0].role"),
    ("code", {"prompt": "def f():\n", "tests": "assert f() is None"}, "missing_field", "entry_point"),
    ("code", {"prompt": "def f():\n", "test": 5, "entry_point": "f"}, "wrong_type", "tests"),
    ("classification", {"text": "Hi", "label": "x", "meta": "oops"}, "wrong_type", "meta"),
]


@pytest.mark.parametrize("task,row,reason,field", BAD_ROWS)
def test_a_bad_field_is_rejected_naming_it(
    tmp_path: Path, task: str, row: dict, reason: str, field: str
) -> None:
    with pytest.raises(RecordError) as e:
        validate_task_record(task, row)
    assert (e.value.reason, e.value.field) == (reason, field)
    good = TASK_SCHEMAS[task].example
    path = _jsonl(tmp_path / "d.jsonl", [good, row])
    read = read_task_records(path, task)
    assert len(read.records) == 1
    [reject] = read.rejects
    assert (reject["reason"], reject["field"], reject["file"], reject["line"]) == (
        reason,
        field,
        str(path),
        2,
    )
    assert set(reject) >= {"reason", "message", "field", "file", "line", "raw"}
    _balanced(read)


def test_a_row_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="must be an object"):
        validate_task_record("summarization", ["d", "s"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- field map
def test_field_map_reads_the_datasets_columns() -> None:
    row = {"sentence": "How far is Aspen ?", "coarse_label": 5, "fine_label": 40, "text": "ignored"}
    rec = validate_task_record("classification", row, {"text": "sentence", "label": "coarse_label"})
    assert rec == {"text": "How far is Aspen ?", "label": "5"}


def test_field_map_error_names_the_task_field_and_the_column() -> None:
    with pytest.raises(RecordError) as e:
        validate_task_record(
            "classification", {"sentence": "Hi"}, {"text": "sentence", "label": "coarse_label"}
        )
    assert e.value.field == "label"
    assert "coarse_label" in e.value.message


def test_field_map_with_an_unknown_task_field_names_the_tasks_fields() -> None:
    with pytest.raises(ValueError, match="text, label, text_pair"):
        validate_task_record("classification", {"text": "Hi", "label": "x"}, {"sentense": "sentence"})


def test_a_bad_field_map_is_refused_before_reading(tmp_path: Path) -> None:
    # an empty file has no row to meet the bad key at; the refusal still comes
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="'sentense' is not a field of the classification task"):
        read_task_records(path, "classification", {"sentense": "sentence"})


def test_field_map_applies_to_every_row_of_a_parquet_file(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path / "wmt.parquet",
        [{"de": "Guten Morgen.", "en": "Good morning.", "sl": "de", "tl": "en"}],
    )
    fmap = {"source": "de", "target": "en", "source_lang": "sl", "target_lang": "tl"}
    read = read_task_records(path, "translation", fmap)
    assert read.records == [
        {
            "source": "Guten Morgen.",
            "target": "Good morning.",
            "source_lang": "de",
            "target_lang": "en",
            "meta": {"source": str(path), "row": 0},
        }
    ]


# ---------------------------------------------------------------------------------------- SemEval markers
SEMEVAL = [
    (
        'The <e1>U.S.</e1> army shipped the <e2>"big" box</e2>.',
        'The U.S. army shipped the "big" box.',
        "U.S.",
        '"big" box',
    ),
    (
        "The <e1>kitchen sink</e1> is part of the <e2>new house</e2>, isn't it?",
        "The kitchen sink is part of the new house, isn't it?",
        "kitchen sink",
        "new house",
    ),
    (  # e2 before e1, markers right against punctuation, non-ASCII characters
        "(<e2>Zürich</e2>) hosts the <e1>E.T.H.</e1>'s campus…",
        "(Zürich) hosts the E.T.H.'s campus…",
        "E.T.H.",
        "Zürich",
    ),
    (  # a marker's neighbours keep their spacing exactly, double spaces included
        "<e1>A</e1>  <e2>B-52 (bomber)</e2>\tflew",
        "A  B-52 (bomber)\tflew",
        "A",
        "B-52 (bomber)",
    ),
]


@pytest.mark.parametrize("marked,clean,head,tail", SEMEVAL)
def test_semeval_markers_convert_exactly(marked: str, clean: str, head: str, tail: str) -> None:
    text, h, t, off = convert_semeval_markers(marked)
    assert (text, h, t) == (clean, head, tail)
    assert text[off["head_start"] : off["head_end"]] == head
    assert text[off["tail_start"] : off["tail_end"]] == tail


@pytest.mark.parametrize(
    "marked",
    [
        "The <e1>system</e1> of antenna elements.",  # no e2
        "The <e1>system</e1> of <e1>antenna</e1> <e2>elements</e2>.",  # e1 twice
        "The </e1>system<e1> of <e2>elements</e2>.",  # closed before opened
        "The <e1> </e1> of <e2>elements</e2>.",  # empty entity
        "The <e1>system of <e2>antenna</e2></e1> elements.",  # nested spans
    ],
)
def test_bad_semeval_markers_are_refused(marked: str) -> None:
    with pytest.raises(RecordError) as e:
        convert_semeval_markers(marked)
    assert (e.value.reason, e.value.field) == ("bad_markers", "text")


def test_a_marked_relation_row_becomes_a_record_with_offsets(tmp_path: Path) -> None:
    rows = [
        {
            "sentence": "The <e1>child</e1> was carefully wrapped and bound into the <e2>cradle</e2> by means of a cord.",
            "relation": "Component-Whole(e2,e1)",
        },
        {"sentence": "The <e1>author</e1> of a keygen uses a <e2>disassembler</e2>.", "relation": "Other"},
    ]
    read = read_task_records(_jsonl(tmp_path / "semeval.jsonl", rows), "relation", {"text": "sentence"})
    assert not read.rejects
    first, second = read.records
    assert first["text"] == "The child was carefully wrapped and bound into the cradle by means of a cord."
    assert (first["head"], first["tail"], first["relation"]) == ("child", "cradle", "Component-Whole(e2,e1)")
    assert second["relation"] == "Other"
    for rec in read.records:
        assert rec["text"][rec["head_start"] : rec["head_end"]] == rec["head"]
        assert rec["text"][rec["tail_start"] : rec["tail_end"]] == rec["tail"]


def test_marked_text_with_a_disagreeing_head_is_rejected() -> None:
    with pytest.raises(RecordError) as e:
        validate_task_record(
            "relation", {"text": "<e1>a</e1> and <e2>b</e2>", "head": "b", "relation": "Other"}
        )
    assert (e.value.reason, e.value.field) == ("marker_mismatch", "head")


def test_plain_relation_row_gets_the_offsets_of_head_and_tail() -> None:
    rec = validate_task_record(
        "relation",
        {
            "text": "Paris is the capital of France.",
            "head": "Paris",
            "tail": "France",
            "relation": "capital_of",
        },
    )
    assert (rec["head_start"], rec["head_end"], rec["tail_start"], rec["tail_end"]) == (0, 5, 24, 30)


# ---------------------------------------------------------------------------------------- SQuAD and HumanEval shapes
def test_squad_answers_become_the_list_of_texts(tmp_path: Path) -> None:
    rows = [
        {
            "id": "56be4db0",
            "context": "Normandy is a region in France.",
            "question": "Where is Normandy?",
            "answers": {"text": ["France", "in France"], "answer_start": [24, 21]},
        },
        {
            "id": "5ad39d53",
            "context": "Normandy is a region in France.",
            "question": "Who ruled Normandy in 1900?",
            "answers": {"text": [], "answer_start": []},
        },
    ]
    for path in (_jsonl(tmp_path / "squad.jsonl", rows), _parquet(tmp_path / "squad.parquet", rows)):
        read = read_task_records(path, "qa")
        assert not read.rejects, read.rejects
        assert [r["answers"] for r in read.records] == [["France", "in France"], []]


def test_plain_answer_lists_and_unanswerable_questions() -> None:
    rec = validate_task_record("qa", {"context": "c d", "question": "q?", "answers": []})
    assert rec["answers"] == []


def test_humaneval_test_field_is_read_as_tests(tmp_path: Path) -> None:
    row = {
        "task_id": "HumanEval/0",
        "prompt": "def add(a, b):\n",
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
        "entry_point": "add",
    }
    read = read_task_records(_parquet(tmp_path / "he.parquet", [row]), "code")
    [rec] = read.records
    assert rec["tests"] == row["test"]
    assert set(rec) == {"prompt", "tests", "entry_point", "solution", "meta"}
    assert rec["solution"] == row["canonical_solution"]  # HumanEval's reference completion
    no_solution = {k: v for k, v in row.items() if k != "canonical_solution"}
    assert "solution" not in validate_task_record("code", no_solution)
    # an explicit 'tests' column wins over 'test'
    assert validate_task_record("code", {**row, "tests": "assert True\n"})["tests"] == "assert True\n"


# ---------------------------------------------------------------------------------------- records of other formats
def test_conll_file_is_read_as_ner_records(tmp_path: Path) -> None:
    path = tmp_path / "ner.conll"
    path.write_text(
        "-DOCSTART- O\n\nEU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\nBlackburn\n\nBrussels B-LOC\n",
        encoding="utf-8",
    )
    read = read_task_records(path, "ner")
    assert [r["tokens"] for r in read.records] == [["EU", "rejects", "German"], ["Brussels"]]
    assert read.records[0]["tags"] == ["B-ORG", "O", "B-MISC"]
    assert [r["meta"]["row"] for r in read.records] == [0, 2]
    [reject] = read.rejects
    assert (reject["reason"], reject["line"]) == ("missing_tag", 8)  # "Blackburn" has no tag
    _balanced(read)


def test_a_tokens_record_is_accepted_as_ner() -> None:
    rec = Record(tokens=["Acme", "Corp"], tags=["B-ORG", "I-ORG"], meta={"id": "s1"})
    assert validate_task_record("ner", rec) == {
        "tokens": ["Acme", "Corp"],
        "tags": ["B-ORG", "I-ORG"],
        "meta": {"id": "s1"},
    }


def test_a_chat_format_is_read_as_dialogue() -> None:
    path = FIXTURES / "formats" / "sharegpt.json"
    read = read_task_records(path, "dialogue", fmt="sharegpt")
    assert not read.rejects
    assert [r["meta"]["row"] for r in read.records] == [0, 1]
    assert read.records[1]["messages"] == [
        {"role": "user", "content": "Say hi in Spanish."},
        {"role": "assistant", "content": "¡Hola!"},
    ]


def test_an_unknown_fmt_names_the_choices(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [TASK_SCHEMAS["qa"].example])
    with pytest.raises(ValueError, match="jsonl, json, parquet"):
        read_task_records(path, "qa", fmt="csv")


def test_fmt_forces_the_container(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text(json.dumps(TASK_SCHEMAS["summarization"].example) + "\n", encoding="utf-8")
    assert len(read_task_records(path, "summarization", fmt="jsonl").records) == 1
    # without it a .txt file is column text (CoNLL), which a summarization row is not
    assert not read_task_records(path, "summarization").records
