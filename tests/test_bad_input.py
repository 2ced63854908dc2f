"""Bad input: every malformed file gives a named error (file, line or record index, field, reason), or,
with ``on_error="skip"``, exactly one reject with that reason while every good record around it is
read and ``records in == records out + rejected`` holds. Also the input that must *not* fail: a BOM,
CRLF line endings, blank lines.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.formats import RecordReader, read_records
from instructkit.formats.io import encode_rows
from instructkit.records import RecordError

from .conftest import without_source

BOM = b"\xef\xbb\xbf"
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
COUNTS = re.compile(r"read (\d+) records: written (\d+) to .* rejected (\d+)")


# ------------------------------------------------------------------------------------ building files
def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _raw(row: Any) -> bytes:
    """A row as bytes: bytes are taken as they are (for malformed JSON), anything else is JSON."""
    return row if isinstance(row, bytes) else dumps(row)


def jsonl(*rows: Any, eol: bytes = b"\n", final_eol: bool = True) -> bytes:
    """One row per line (line n holds rows[n - 1])."""
    return eol.join(_raw(r) for r in rows) + (eol if final_eol else b"")


def json_array(*rows: Any) -> bytes:
    """A JSON array with '[' on line 1 and rows[k] on line k + 2."""
    return b"[\n" + b",\n".join(_raw(r) for r in rows) + b"\n]\n"


def around(good: list[Any], bad: Any, at: int = 2) -> list[Any]:
    """The good rows with the bad one put at position ``at`` (default: line 3 of a JSONL file)."""
    return [*good[:at], bad, *good[at:]]


def turns(*pairs: tuple[str, str], keys: tuple[str, str] = ("role", "content")) -> list[dict[str, Any]]:
    return [{keys[0]: role, keys[1]: content} for role, content in pairs]


def openai(i: int) -> dict[str, Any]:
    return {"messages": turns(("user", f"Question {i}?"), ("assistant", f"Answer {i}."))}


def sharegpt(i: int) -> dict[str, Any]:
    return {"conversations": turns(("human", f"Hi {i}"), ("gpt", f"Hello {i}"), keys=("from", "value"))}


def alpaca(i: int) -> dict[str, Any]:
    return {"instruction": f"Add {i} and 1.", "input": "", "output": str(i + 1)}


def dolly(i: int) -> dict[str, Any]:
    return {"instruction": f"Name colour {i}.", "context": "", "response": "Red.", "category": "open_qa"}


def prompt_completion(i: int) -> dict[str, Any]:
    return {"prompt": f"{i} + 1 =", "completion": str(i + 1)}


def self_instruct(i: int) -> dict[str, Any]:
    return {
        "id": f"task_{i}",
        "instruction": "Give the antonym.",
        "instances": [{"input": f"word {i}", "output": f"antonym {i}"}],
        "is_classification": False,
    }


def native_tokens(i: int) -> dict[str, Any]:
    return {"tokens": ["Anna", "visited", f"Paris{i}"], "tags": ["B-PER", "O", "B-LOC"], "meta": {}}


def good(make: Any, n: int = 3) -> list[dict[str, Any]]:
    return [make(i) for i in range(n)]


OA, SG, AL, DO, PC, SI, NT = (
    good(openai),
    good(sharegpt),
    good(alpaca),
    good(dolly),
    good(prompt_completion),
    good(self_instruct),
    good(native_tokens),
)
GOOD_USER_ASSISTANT = turns(("user", "Hi"), ("assistant", "Hello"))

# CoNLL: sentences on lines 1-2, 4-5, 7-8 and 10-11; `conll(bad=...)` replaces the third sentence.
CONLL_GOOD = [
    b"EU B-ORG\nrejects O\n",
    b"German B-MISC\ncall O\n",
    b"Paris B-LOC\nis O\n",
    b"Peter B-PER\nBlackburn I-PER\n",
]


def conll(third: bytes | None = None, eol: bytes = b"\n") -> bytes:
    blocks = list(CONLL_GOOD)
    if third is not None:
        blocks[2] = third
    return b"\n".join(blocks).replace(b"\n", eol)


def gzip_cut_after(whole: bytes, rest: bytes) -> bytes:
    """A gzip stream of ``whole`` + ``rest`` cut right after ``whole`` was flushed: the readable prefix
    is exactly ``whole``, the rest (final block and trailer) is missing."""
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = co.compress(whole) + co.flush(zlib.Z_FULL_FLUSH)
    co.compress(rest)
    return head


def parquet(rows: list[dict[str, Any]]) -> bytes:
    return encode_rows(rows, Path("rows.parquet"))


NATIVE_CHAT = [{"messages": GOOD_USER_ASSISTANT, "meta": {"id": f"r{i}"}} for i in range(4)]
NATIVE_CHAT[2] = {"messages": turns(("user", "Hi"), ("bot", "Hello")), "meta": {"id": "r2"}}


# ------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Case:
    name: str
    suffix: str
    content: bytes
    fmt: str | None  # None: detected from the content
    reason: str
    line: int | None  # None: Parquet (index only), or a line the case does not pin down
    field: str | None  # None: not asserted (container-level errors have no field)
    good: int = 3  # good records planted, all of which skip mode must read
    index: int | None = None  # the record index, asserted when given


CASES = [
    # ---- JSON lines: container damage
    Case(
        "jsonl_malformed_json",
        ".jsonl",
        jsonl(*around(OA, b'{"messages": [}')),
        None,
        "malformed_json",
        3,
        None,
    ),
    Case("jsonl_line_is_list", ".jsonl", jsonl(*around(OA, [1, 2])), None, "wrong_type", 3, None),
    Case("jsonl_line_is_number", ".jsonl", jsonl(*around(SG, 42)), "sharegpt", "wrong_type", 3, None),
    Case(
        "jsonl_undecodable_bytes",
        ".jsonl",
        jsonl(*around(OA, b'{"messages": [{"role": "user", "content": "a\xff\xfeb"}]}')),
        None,
        "undecodable_bytes",
        3,
        None,
    ),
    Case(
        "jsonl_truncated_last_line",
        ".jsonl",
        jsonl(*OA, b'{"messages": [{"role": "user", "con', final_eol=False),
        None,
        "truncated_record",
        4,
        None,
    ),
    Case(
        "jsonl_unknown_format_first_line", ".jsonl", jsonl({"foo": 1}, *OA), None, "unknown_format", 1, None
    ),
    Case(
        "jsonl_crlf_malformed_line",
        ".jsonl",
        jsonl(*around(OA, b'{"messages": oops}'), eol=b"\r\n"),
        None,
        "malformed_json",
        3,
        None,
    ),
    Case(
        "jsonl_bom_then_unknown_role",
        ".jsonl",
        BOM + jsonl(*around(OA, {"messages": turns(("user", "Hi"), ("bot", "Hey"))})),
        None,
        "unknown_role",
        3,
        "messages[1].role",
    ),
    Case(
        "jsonl_blank_lines_keep_numbering",
        ".jsonl",
        jsonl(OA[0], b"", b"  \t", {"messages": turns(("assistant", "Hey"), ("user", "Hi"))}, *OA[1:]),
        None,
        "role_order",
        4,
        "messages[0].role",
    ),
    Case(
        "jsonl_bom_mid_file",  # two files with a BOM each, concatenated: the second BOM is not JSON
        ".jsonl",
        BOM + jsonl(*OA[:2]) + BOM + jsonl(OA[2], openai(3)),
        None,
        "malformed_json",
        3,
        None,
    ),
    # ---- JSON array: container damage
    Case(
        "json_array_undecodable_bytes",
        ".json",
        json_array(*around(AL, b'{"instruction": "x\xff\xfe", "input": "", "output": "y"}')),
        None,
        "undecodable_bytes",
        4,
        None,
    ),
    Case(
        "json_array_truncated",  # cut mid-element, between two keys
        ".json",
        b"[\n" + b",\n".join(dumps(r) for r in AL) + b',\n{"instruction": "cut here", ',
        None,
        "truncated_file",
        5,
        None,
    ),
    Case(
        "json_array_truncated_mid_string",  # where most cuts land: inside a string
        ".json",
        b"[\n" + b",\n".join(dumps(r) for r in AL) + b',\n{"instruction": "cut here", "out',
        None,
        "truncated_file",
        5,
        None,
    ),
    Case(
        "json_array_malformed_element",  # the parser cannot resync: the rest of the array is lost
        ".json",
        json_array(*around(AL, b'{"instruction": "x" "output": "y"}')),
        None,
        "malformed_json",
        4,
        None,
        good=2,
    ),
    # ---- gzip
    Case(
        "gzip_truncated",
        ".jsonl.gz",
        gzip_cut_after(jsonl(*OA), jsonl(*good(openai, 50))),
        None,
        "truncated_file",
        None,
        None,
    ),
    # ---- OpenAI chat
    Case(
        "openai_content_int",
        ".jsonl",
        jsonl(
            *around(
                OA, {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": 5}]}
            )
        ),
        None,
        "wrong_type",
        3,
        "messages[1].content",
    ),
    Case(
        "openai_missing_role",
        ".jsonl",
        jsonl(*around(OA, {"messages": [{"content": "Hi"}, {"role": "assistant", "content": "Hey"}]})),
        None,
        "missing_role",
        3,
        "messages[0].role",
    ),
    Case(
        "openai_unknown_role_bot",
        ".jsonl",
        jsonl(*around(OA, {"messages": turns(("user", "Hi"), ("bot", "Hey"))})),
        "openai",
        "unknown_role",
        3,
        "messages[1].role",
    ),
    Case(
        "openai_empty_messages",
        ".jsonl",
        jsonl(*around(OA, {"messages": []})),
        None,
        "empty_conversation",
        3,
        "messages",
    ),
    Case(
        "openai_messages_not_list",
        ".jsonl",
        jsonl(*around(OA, {"messages": "Hi"})),
        None,
        "wrong_type",
        3,
        "messages",
    ),
    Case(
        "openai_only_system",
        ".jsonl",
        jsonl(*around(OA, {"messages": turns(("system", "Be brief."))})),
        None,
        "empty_conversation",
        3,
        "messages",
    ),
    Case(
        "openai_two_user_turns",
        ".jsonl",
        jsonl(*around(OA, {"messages": turns(("user", "Hi"), ("user", "Hello?"), ("assistant", "Hey"))})),
        None,
        "consecutive_user_turns",
        3,
        "messages[1].role",
    ),
    Case(
        "openai_assistant_first",
        ".jsonl",
        jsonl(*around(OA, {"messages": turns(("assistant", "Hey"), ("user", "Hi"))})),
        None,
        "role_order",
        3,
        "messages[0].role",
    ),
    Case(
        "openai_ends_with_user",
        ".jsonl",
        jsonl(*around(OA, {"messages": turns(("user", "Hi"), ("assistant", "Hey"), ("user", "And?"))})),
        None,
        "no_assistant_reply",
        3,
        "messages[2].role",
    ),
    Case(
        "openai_whitespace_assistant",
        ".jsonl",
        jsonl(*around(OA, {"messages": turns(("user", "Hi"), ("assistant", " \n\t "))})),
        None,
        "empty_content",
        3,
        "messages[1].content",
    ),
    Case(
        "openai_system_not_first",
        ".jsonl",
        jsonl(
            *around(OA, {"messages": turns(("user", "Hi"), ("system", "Be brief."), ("assistant", "Hey"))})
        ),
        None,
        "misplaced_system",
        3,
        "messages[1].role",
    ),
    Case(
        "openai_image_part",
        ".jsonl",
        jsonl(
            *around(
                OA,
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "What is this?"},
                                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                            ],
                        },
                        {"role": "assistant", "content": "A cat."},
                    ]
                },
            )
        ),
        None,
        "non_text_content",
        3,
        "messages[0].content[1]",
    ),
    # ---- ShareGPT
    Case(
        "sharegpt_unknown_role_robot",
        ".jsonl",
        jsonl(
            *around(SG, {"conversations": turns(("human", "Hi"), ("robot", "Beep"), keys=("from", "value"))})
        ),
        None,
        "unknown_role",
        3,
        "conversations[1].from",
    ),
    Case(
        "sharegpt_missing_from",
        ".json",
        json_array(*around(SG, {"conversations": [{"value": "Hi"}, {"from": "gpt", "value": "Hey"}]})),
        None,
        "missing_role",
        4,
        "conversations[0].from",
    ),
    Case(
        "sharegpt_empty_conversations",
        ".jsonl",
        jsonl(*around(SG, {"conversations": []})),
        None,
        "empty_conversation",
        3,
        "conversations",
    ),
    Case(
        "sharegpt_system_key_and_system_turn",
        ".jsonl",
        jsonl(
            *around(
                SG,
                {
                    "system": "Be brief.",
                    "conversations": turns(
                        ("system", "Be kind."), ("human", "Hi"), ("gpt", "Hey"), keys=("from", "value")
                    ),
                },
            )
        ),
        None,
        "misplaced_system",
        3,
        "system",
    ),
    Case(
        "sharegpt_two_human_turns_names_its_own_field",
        ".jsonl",
        jsonl(
            *around(
                SG,
                {
                    "system": "Be brief.",
                    "conversations": turns(
                        ("human", "Hi"), ("human", "Hello?"), ("gpt", "Hey"), keys=("from", "value")
                    ),
                },
            )
        ),
        None,
        "consecutive_user_turns",
        3,
        "conversations[1].from",  # today: 'messages[2].role'
    ),
    # ---- Alpaca, Dolly
    Case(
        "alpaca_missing_output",
        ".json",
        json_array(*around(AL, {"instruction": "Add 5 and 1.", "input": ""})),
        None,
        "missing_field",
        4,
        "output",
    ),
    Case(
        "alpaca_output_wrong_type",
        ".jsonl",
        jsonl(*around(AL, {"instruction": "Add 5 and 1.", "input": "", "output": 6})),
        "alpaca",
        "wrong_type",
        3,
        "output",
    ),
    Case(
        "alpaca_history_not_pairs",
        ".jsonl",
        jsonl(
            *around(AL, {"instruction": "And?", "input": "", "output": "Blue.", "history": [["only one"]]})
        ),
        None,
        "wrong_type",
        3,
        "history[0]",
    ),
    Case(
        "alpaca_history_not_list",
        ".jsonl",
        jsonl(*around(AL, {"instruction": "And?", "input": "", "output": "Blue.", "history": "Red."})),
        None,
        "wrong_type",
        3,
        "history",
    ),
    Case(
        "dolly_missing_response",
        ".jsonl",
        jsonl(*around(DO, {"instruction": "Name a colour.", "context": "", "category": "open_qa"})),
        None,
        "missing_field",
        3,
        "response",
    ),
    # ---- prompt-completion
    Case(
        "prompt_completion_null",
        ".jsonl",
        jsonl(*around(PC, {"prompt": "5 + 1 =", "completion": None})),
        None,
        "missing_field",
        3,
        "completion",
    ),
    Case(
        "prompt_completion_number",
        ".jsonl",
        jsonl(*around(PC, {"prompt": "5 + 1 =", "completion": 6})),
        "prompt-completion",
        "wrong_type",
        3,
        "completion",
    ),
    Case(
        "prompt_completion_empty_names_its_own_field",
        ".jsonl",
        jsonl(*around(PC, {"prompt": "5 + 1 =", "completion": "  "})),
        None,
        "empty_content",
        3,
        "completion",  # today: 'messages[1].content'
    ),
    # ---- Self-Instruct
    Case(
        "self_instruct_instances_not_list",
        ".jsonl",
        jsonl(
            *around(SI, {"instruction": "Give the antonym.", "instances": {"input": "hot", "output": "cold"}})
        ),
        None,
        "wrong_type",
        3,
        "instances",
    ),
    Case(
        "self_instruct_empty_instances",
        ".jsonl",
        jsonl(*around(SI, {"instruction": "Give the antonym.", "instances": []})),
        None,
        "empty_conversation",
        3,
        "instances",
    ),
    Case(
        "self_instruct_instance_missing_output",
        ".jsonl",
        jsonl(*around(SI, {"instruction": "Give the antonym.", "instances": [{"input": "hot"}]})),
        None,
        "missing_field",
        3,
        "instances[0].output",
    ),
    # ---- instructkit native
    Case(
        "native_length_mismatch",
        ".jsonl",
        jsonl(*around(NT, {"tokens": ["Anna", "left"], "tags": ["B-PER"], "meta": {}})),
        None,
        "length_mismatch",
        3,
        "tags",
    ),
    Case(
        "native_unknown_field",
        ".jsonl",
        jsonl(*around(NT, {"tokens": ["Anna"], "tags": ["B-PER"], "meta": {}, "extra": 1})),
        None,
        "unknown_field",
        3,
        "extra",
    ),
    Case(
        "parquet_unknown_role",
        ".parquet",
        parquet(NATIVE_CHAT),
        None,
        "unknown_role",
        None,
        "messages[1].role",
        index=2,
    ),
    # ---- CoNLL (the third sentence, lines 7-8, is the bad one)
    Case("conll_single_column", ".conll", conll(b"Paris\nis O\n"), None, "missing_tag", 7, "tokens[0]"),
    Case("conll_bad_tag", ".conll", conll(b"Paris B-LOC\nis X-PER\n"), None, "bad_tag", 8, "tags[1]"),
    Case(
        "conll_undecodable_bytes",
        ".txt",
        conll(b"Paris B-LOC\nis\xff O\n"),
        "conll",
        "undecodable_bytes",
        8,
        None,
    ),
    # ---- known bugs: a crash or silent loss instead of a named error
    Case(
        "json_array_trailing_data",
        ".json",
        json_array(*AL[:2]) + dumps(AL[2]) + b"\n",
        None,
        "malformed_json",
        5,
        None,
        good=2,
    ),
    Case(
        "jsonl_first_line_is_list",  # sniffed as a JSON array: lines 2-4 vanish without a reject
        ".jsonl",
        jsonl([1, 2], *OA),
        "openai",
        "wrong_type",
        1,
        None,
    ),
    Case(
        "json_array_first_element_list",
        ".json",
        json_array([1, 2], *OA),
        None,
        "unknown_format",
        2,
        None,
    ),
    Case(
        "jsonl_deeply_nested_line",
        ".jsonl",
        jsonl(*around(OA, b"[" * 100_000)),
        None,
        "malformed_json",
        3,
        None,
    ),
]
BY_NAME = {c.name: c for c in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"


def params(mode: str) -> list[Any]:
    return [pytest.param(case, id=case.name) for case in CASES]


def write_case(case: Case, folder: Path) -> Path:
    path = folder / f"{case.name}{case.suffix}"
    path.write_bytes(case.content)
    return path


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 22 and len({c.reason for c in CASES}) >= 15


# ------------------------------------------------------------------------------------ raise / skip
@pytest.mark.parametrize("case", params("raise"))
def test_raise_names_file_line_field_reason(case: Case, tmp_path: Path) -> None:
    path = write_case(case, tmp_path)
    with pytest.raises(RecordError) as info:
        list(RecordReader(path, fmt=case.fmt))
    err = info.value
    assert err.reason == case.reason, str(err)
    assert err.file is not None and err.file.endswith(path.name)
    assert path.name in str(err) and f"[{case.reason}]" in str(err)
    if case.line is not None:
        assert err.line == case.line, str(err)
        assert f"line {case.line}" in str(err)
    else:
        assert err.line is not None or err.index is not None, "an error must name a line or a record index"
    if case.index is not None:
        assert err.index == case.index and f"record {case.index}" in str(err)
    if case.field is not None:
        assert err.field == case.field, str(err)
        assert f"field '{case.field}'" in str(err)


@pytest.mark.parametrize("case", params("skip"))
def test_skip_rejects_with_reason_and_accounts(case: Case, tmp_path: Path) -> None:
    path = write_case(case, tmp_path)
    reader = RecordReader(path, fmt=case.fmt, on_error="skip")
    records = list(reader)
    assert [r["reason"] for r in reader.rejects] == [case.reason], reader.rejects
    (reject,) = reader.rejects
    assert reject["file"].endswith(path.name)
    if case.line is not None:
        assert reject["line"] == case.line
    if case.field is not None:
        assert reject["field"] == case.field
    assert len(records) == case.good
    assert reader.n_read == len(records) + len(reader.rejects) == case.good + 1


def test_gzip_cut_in_half_is_named(tmp_path: Path) -> None:
    """Gzip bytes cut in half: the error says the file is truncated; accounting holds either way."""
    payload = jsonl(*good(openai, 200))
    compressed = gzip.compress(payload, mtime=0)
    path = tmp_path / "half.jsonl.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(RecordError) as info:
        list(RecordReader(path))
    # truncated_record when the readable prefix ends mid-line and is kept, else truncated_file
    assert info.value.reason in ("truncated_file", "truncated_record")
    assert info.value.file.endswith("half.jsonl.gz") and "half.jsonl.gz" in str(info.value)
    reader = RecordReader(path, on_error="skip")
    records = list(reader)
    assert "truncated_file" in [r["reason"] for r in reader.rejects]
    assert reader.n_read == len(records) + len(reader.rejects)
    assert len(records) < 200


def test_parquet_meta_that_is_not_json_is_a_reject_not_a_crash(tmp_path: Path) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"messages": GOOD_USER_ASSISTANT, "meta": json.dumps({"id": f"r{i}"})} for i in range(4)]
    rows[2]["meta"] = "train split"  # a plain string column, as other tools write it
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    path = tmp_path / "meta.parquet"
    path.write_bytes(buf.getvalue())
    reader = RecordReader(path, on_error="skip")
    records = list(reader)
    assert len(records) == 3 and [r["index"] for r in reader.rejects] == [2]
    assert reader.n_read == len(records) + len(reader.rejects)


# ------------------------------------------------------------------------------------ through the CLI
runner = CliRunner()
CLI_CASES = [
    "jsonl_malformed_json",
    "sharegpt_unknown_role_robot",
    "alpaca_missing_output",
    "json_array_undecodable_bytes",
    "self_instruct_instance_missing_output",
    "jsonl_truncated_last_line",
]


def convert(*args: str):
    return runner.invoke(app, ["data", "convert", *args], env=ENV)


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_skip_writes_rejects_and_accounts(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = BY_NAME[name]
    monkeypatch.chdir(tmp_path)  # short relative paths: nothing for the console to wrap
    path = write_case(case, Path("."))
    result = convert(path.name, "--to", "openai", "-o", "out.jsonl", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    match = COUNTS.search(result.output)
    assert match, result.output
    n_read, written, rejected = map(int, match.groups())
    assert n_read == written + rejected
    assert (n_read, written, rejected) == (case.good + 1, case.good, 1)
    assert len(read_records("out.jsonl")) == written
    rejects = [json.loads(line) for line in Path("out.rejects.jsonl").read_text("utf-8").splitlines()]
    assert [r["reason"] for r in rejects] == [case.reason]
    assert rejects[0]["file"].endswith(path.name) and rejects[0]["line"] == case.line
    assert f"{case.reason} 1" in result.output  # "rejects by reason: ..."


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_raise_exits_1_naming_file_line_reason(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = BY_NAME[name]
    monkeypatch.chdir(tmp_path)
    path = write_case(case, Path("."))
    result = convert(path.name, "--to", "openai", "-o", "out.jsonl")
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), "no traceback"
    assert path.name in result.output
    assert f"line {case.line}" in result.output
    assert f"[{case.reason}]" in result.output
    if case.field is not None:
        assert f"field '{case.field}'" in result.output
    assert not Path("out.jsonl").exists()


def test_cli_skip_empties_a_stale_rejects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean rerun leaves an empty rejects file (written, not deleted: deleting whatever was at the
    rejects path once deleted inputs; see tests/test_path_safety.py)."""
    monkeypatch.chdir(tmp_path)
    write_case(BY_NAME["jsonl_malformed_json"], Path("."))
    Path("clean.jsonl").write_bytes(jsonl(*OA))
    assert (
        convert(
            "jsonl_malformed_json.jsonl", "--to", "openai", "-o", "out.jsonl", "--on-error", "skip"
        ).exit_code
        == 0
    )
    assert Path("out.rejects.jsonl").exists()
    result = convert("clean.jsonl", "--to", "openai", "-o", "out.jsonl", "--on-error", "skip")
    assert result.exit_code == 0 and COUNTS.search(result.output).groups() == ("3", "3", "0")
    assert Path("out.rejects.jsonl").read_bytes() == b""


def test_cli_lone_surrogate_escape_is_rejected_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bad = b'{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "x"}]}'
    Path("surrogate.jsonl").write_bytes(jsonl(*around(OA, bad)))
    result = convert("surrogate.jsonl", "--to", "openai", "-o", "out.jsonl", "--on-error", "skip")
    assert result.exit_code == 0, repr(result.exception)
    n_read, written, rejected = map(int, COUNTS.search(result.output).groups())
    assert n_read == written + rejected == 4


# ------------------------------------------------------------------------------------ accepted input
def _read_pair(tmp_path: Path, name: str, plain: bytes, variant: bytes, fmt: str | None = None):
    """Read the same content written plainly and as a variant (BOM, CRLF, ...) under one file name."""
    out = []
    for sub, data in (("plain", plain), ("variant", variant)):
        (tmp_path / sub).mkdir()
        path = tmp_path / sub / name
        path.write_bytes(data)
        reader = RecordReader(path, fmt=fmt)
        out.append(list(reader))
        assert reader.rejects == []
    return out


ACCEPTED = [
    pytest.param("x.jsonl", jsonl(*OA), BOM + jsonl(*OA), None, id="bom_jsonl"),
    pytest.param("x.json", json_array(*AL), BOM + json_array(*AL), None, id="bom_json_array"),
    pytest.param("x.jsonl", jsonl(*SG), jsonl(*SG, eol=b"\r\n"), None, id="crlf_jsonl"),
    pytest.param(
        "x.json", json_array(*AL), json_array(*AL).replace(b"\n", b"\r\n"), None, id="crlf_json_array"
    ),
    pytest.param("x.conll", conll(), conll(eol=b"\r\n"), None, id="crlf_conll"),
    pytest.param("x.txt", conll(), BOM + conll(eol=b"\r\n"), "conll", id="bom_crlf_conll"),
    pytest.param("x.jsonl", jsonl(*OA), BOM + jsonl(*OA, eol=b"\r\n"), None, id="bom_crlf_jsonl"),
    pytest.param(
        "x.jsonl", jsonl(*OA), jsonl(OA[0], b"", OA[1], b"   \t", OA[2]), None, id="blank_lines_jsonl"
    ),
    pytest.param("x.jsonl", jsonl(*OA), jsonl(*OA, final_eol=False), None, id="no_final_newline_jsonl"),
    pytest.param("x.conll", conll(), b"\n\n" + conll() + b"\n\n\n", None, id="extra_blank_lines_conll"),
    pytest.param("x.conll", conll(), b"-DOCSTART- -X- O O\n\n" + conll(), None, id="docstart_conll"),
]


@pytest.mark.parametrize("name,plain,variant,fmt", ACCEPTED)
def test_accepted_input_reads_like_the_plain_file(
    tmp_path: Path, name: str, plain: bytes, variant: bytes, fmt: str | None
) -> None:
    plain_recs, variant_recs = _read_pair(tmp_path, name, plain, variant, fmt)
    assert len(plain_recs) >= 3
    assert variant_recs == plain_recs


def test_intact_gzip_reads_like_the_plain_file(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_bytes(jsonl(*OA))
    (tmp_path / "x.jsonl.gz").write_bytes(gzip.compress(jsonl(*OA), mtime=0))
    plain, zipped = read_records(tmp_path / "x.jsonl"), read_records(tmp_path / "x.jsonl.gz")
    assert [without_source(r) for r in zipped] == [without_source(r) for r in plain] and len(plain) == 3


def test_empty_file_is_no_records_and_no_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    reader = RecordReader(path, on_error="skip")
    assert list(reader) == [] and reader.rejects == [] and reader.n_read == 0


def test_conll_file_starting_with_a_bracket_token(tmp_path: Path) -> None:
    data = b"[ O\nsic O\n] O\n\n" + conll()
    path = tmp_path / "brackets.conll"
    path.write_bytes(data)
    records = read_records(path)
    assert records[0].tokens == ["[", "sic", "]"] and len(records) == 5


# ------------------------------------------------------------------------------------ edge cases (#9)
# JSON the stdlib parser accepts but that cannot be read back or written faithfully: an integer over
# Python's 4,300-digit limit (a ValueError traceback, even under skip), NaN/Infinity (not JSON; written
# back as invalid JSON), a number that overflows to infinity, a key given twice (the last silently won).
HUGE = b"9" * 5000
EDGE_CASES = [
    Case(
        "jsonl_integer_over_4300_digits",
        ".jsonl",
        jsonl(
            *around(
                OA,
                b'{"messages": [{"role": "user", "content": "Hi"}, '
                b'{"role": "assistant", "content": "Hey"}], "meta": {"n": ' + HUGE + b"}}",
            )
        ),
        None,
        "number_too_large",
        3,
        "meta.n",
    ),  # fmt: skip
    Case(
        "json_array_integer_over_4300_digits",  # the array reads on past the bad element
        ".json",
        json_array(*around(AL, b'{"instruction": "x", "input": "", "output": "y", "n": [1, ' + HUGE + b"]}")),
        None,
        "number_too_large",
        4,
        "n[1]",
    ),
    Case(
        "jsonl_nan",
        ".jsonl",
        jsonl(*around(NT, b'{"tokens": ["Anna"], "tags": ["B-PER"], "meta": {"score": NaN}}')),
        None,
        "non_finite_number",
        3,
        "meta.score",
    ),
    Case(
        "jsonl_negative_infinity_label",
        ".jsonl",
        jsonl(
            {"text": "good", "label": 1, "meta": {}},
            b'{"text": "bad", "label": [1, -Infinity], "meta": {}}',
            {"text": "fine", "label": 2, "meta": {}},
        ),
        None,
        "non_finite_number",
        2,
        "label[1]",
        good=2,
    ),
    Case(
        "json_array_float_overflows_to_infinity",
        ".json",
        json_array(*around(AL, b'{"instruction": "x", "input": "", "output": "y", "w": 1e400}')),
        None,
        "non_finite_number",
        4,
        "w",
    ),
    Case(
        "jsonl_duplicate_key",
        ".jsonl",
        jsonl(
            *around(
                OA,
                b'{"messages": [{"role": "user", "content": "Hi", "content": "Bye"}, '
                b'{"role": "assistant", "content": "Hey"}]}',
            )
        ),
        None,
        "duplicate_key",
        3,
        "messages[0].content",
    ),
    Case(
        "json_array_duplicate_key",
        ".json",
        json_array(*around(AL, b'{"instruction": "x", "input": "", "output": "y", "output": "z"}')),
        None,
        "duplicate_key",
        4,
        "output",
    ),
]


def _parquet_with_nan() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"text": f"t{i}", "label": float(i), "meta": "{}"} for i in range(4)]
    rows[2]["label"] = float("nan")
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


EDGE_CASES.append(
    Case("parquet_nan", ".parquet", _parquet_with_nan(), None, "non_finite_number", None, "label", index=2)
)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in EDGE_CASES])
def test_edge_case_raise_names_file_line_field_reason(case: Case, tmp_path: Path) -> None:
    test_raise_names_file_line_field_reason(case, tmp_path)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in EDGE_CASES])
def test_edge_case_skip_rejects_with_reason_and_accounts(case: Case, tmp_path: Path) -> None:
    test_skip_rejects_with_reason_and_accounts(case, tmp_path)


def _curate(*args: str):
    Path("steps.yaml").write_text("steps: [normalize]\n")
    return runner.invoke(app, ["data", "curate", *args, "--config", "steps.yaml"], env=ENV)


@pytest.mark.parametrize("name", ["jsonl_integer_over_4300_digits", "jsonl_nan", "jsonl_duplicate_key"])
@pytest.mark.parametrize("command", ["convert", "show", "curate"])
def test_cli_edge_cases_are_rejects_or_named_errors_never_tracebacks(
    name: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = next(c for c in EDGE_CASES if c.name == name)
    monkeypatch.chdir(tmp_path)
    path = write_case(case, Path(".")).name
    run = {
        "convert": lambda *a: convert(path, "--to", "instructkit", "-o", "out.jsonl", *a),
        "show": lambda *a: runner.invoke(app, ["data", "show", path, "--json", *a], env=ENV),
        "curate": lambda *a: _curate(path, "-o", "curated", *a),
    }[command]
    skipped = run("--on-error", "skip")
    assert skipped.exit_code == 0, skipped.output  # today: a ValueError traceback for the huge integer
    if command == "convert":
        assert (
            COUNTS.search(skipped.output).groups() == ("4", "3", "1") and f"{case.reason} 1" in skipped.output
        )
    elif command == "show":
        summary = json.loads(skipped.output)
        assert (summary["read"], summary["rejected"]) == (4, 1)
    else:
        card = json.loads(Path("curated/card.json").read_text())
        assert card["accounting"]["in"] == 4 and card["rejected_by_reason"] == {case.reason: 1}
    stopped = run("--on-error", "raise")
    assert stopped.exit_code == 1, stopped.output
    assert stopped.exception is None or isinstance(stopped.exception, SystemExit), repr(stopped.exception)
    assert f"line {case.line}" in stopped.output and f"field '{case.field}'" in stopped.output
    assert f"[{case.reason}]" in stopped.output


def test_nan_is_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN read from a file is a reject, not output; a record holding NaN made in code is refused on write."""
    from instructkit.formats import write_records
    from instructkit.records import Record

    monkeypatch.chdir(tmp_path)
    path = write_case(next(c for c in EDGE_CASES if c.name == "jsonl_nan"), Path("."))
    assert convert(path.name, "--to", "instructkit", "-o", "out.jsonl", "--on-error", "skip").exit_code == 0

    def strict(name: str) -> None:
        raise AssertionError(f"{name} written into a JSON file")

    for name in ("out.jsonl", "out.rejects.jsonl"):
        for line in Path(name).read_text().splitlines():
            json.loads(line, parse_constant=strict)
    rec = Record(text="x", label=float("nan"), meta={})
    for suffix in (".jsonl", ".json", ".parquet"):
        with pytest.raises(RecordError) as info:
            write_records([rec], tmp_path / f"nan{suffix}")
        assert info.value.reason == "non_finite_number" and info.value.field == "label"
        assert not (tmp_path / f"nan{suffix}").exists()


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if not Path("/sys").is_dir():  # root writes anywhere but a read-only or virtual file system
        pytest.skip("running as root without /sys: no folder root cannot write")
    return Path("/sys")


@pytest.mark.parametrize("where", ["a_folder", "under_a_file", "unwritable_folder"])
def test_cli_output_paths_that_cannot_be_written_are_named_errors(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("in.jsonl").write_bytes(jsonl(*OA))
    Path("notes.txt").write_text("mine")
    Path("folder").mkdir()
    out = {
        "a_folder": "folder",
        "under_a_file": "notes.txt/out.jsonl",
        "unwritable_folder": str(_unwritable_folder(tmp_path) / "out.jsonl"),
    }[where]
    result = convert("in.jsonl", "--to", "openai", "-o", out)
    assert result.exit_code == 1, result.output  # today: IsADirectoryError / NotADirectoryError tracebacks
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "error:" in result.output and out in result.output, result.output
    assert Path("notes.txt").read_text() == "mine" and list(Path("folder").iterdir()) == []


@pytest.mark.parametrize(
    "to,out",
    [
        ("conll", "x.parquet"),
        ("conll", "x.jsonl"),
        ("openai", "x.conll"),
        ("openai", "x.txt"),
        ("openai", "x"),
    ],
)
def test_cli_output_suffix_must_fit_the_format(
    to: str, out: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("in.conll").write_bytes(conll())
    result = convert("in.conll", "--to", to, "-o", out)
    assert result.exit_code == 1 and "error:" in result.output and out in result.output, result.output
    assert not Path(out).exists()  # today: CoNLL text inside x.parquet
    assert convert("in.conll", "--to", "conll", "-o", "fine.conll.gz").exit_code == 0


ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m\r"  # clear screen, set title (BEL), C1 CSI, carriage return


def test_show_prints_control_characters_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [
        {"messages": turns(("user", f"Hi{ESCAPES}"), ("assistant", "ok")), "meta": {"id": f"r{ESCAPES}"}},
        {"tokens": [f"A{ESCAPES}"], "tags": ["B-PER"], "meta": {}},
        {"text": f"t{ESCAPES}", "label": f"l{ESCAPES}", "meta": {"note": ESCAPES}},
        {"messages": turns(("user", "Hi"), (f"bot{ESCAPES}", "Hey"))},  # a reject whose message holds them
    ]
    Path("esc.jsonl").write_bytes(jsonl(*rows))
    shown = runner.invoke(app, ["data", "show", "esc.jsonl", "--on-error", "skip", "-n", "3"], env=ENV)
    stopped = runner.invoke(app, ["data", "show", "esc.jsonl"], env=ENV)  # the error line, too
    assert shown.exit_code == 0 and stopped.exit_code == 1, (shown.output, stopped.output)
    for result in (shown, stopped):
        raw = [c for c in result.output if c in "\x1b\x07\x9b\r"]
        assert raw == [], f"control characters printed raw: {raw!r}"
        assert "\\x1b[2J" in result.output and "\\x9b" in result.output
