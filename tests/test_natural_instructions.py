"""Super-NaturalInstructions task files: the shipped real task read with exact counts and prompts under
both encodings (the Tk-Instruct collator's text), malformed files one error naming file and key,
malformed instances rejects naming the index and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instructkit.tasks.natural_instructions import (
    ENCODINGS,
    TaskFileError,
    encode_prompt,
    read_sni_records,
    read_sni_task,
)

ROOT = Path(__file__).parent.parent
EDIBLE = ROOT / "examples/data/natural-instructions/task1149_item_check_edible.json"
DEFINITION = (
    "Definition: In this task, you are given an item and you need to check whether it is edible or not, "
    "return 1 if it is edible, else return 2.\n\n"
)


def test_real_task_file_counts_under_both_encodings() -> None:
    task = read_sni_task(EDIBLE)
    assert task.name == "task1149_item_check_edible"
    assert (len(task.instances), len(task.positive), len(task.negative)) == (119, 2, 2)
    for encoding, n_pos in (("definition", 0), ("definition+2pos", 2)):
        read = read_sni_records(EDIBLE, encoding)
        assert (read.n_in, len(read.records), len(read.rejects)) == (119, 119, 0)
        assert read.positive_used == n_pos
        assert all(
            r.meta["positive_examples"] == n_pos and r.meta["encoding"] == encoding for r in read.records
        )
        # 49 instances are edible ("1"), 70 are not ("2"): the answer is the first output
        answers = [r.messages[1].content for r in read.records]
        assert (answers.count("1"), answers.count("2")) == (49, 70)
        prompts = [r.messages[0].content for r in read.records]
        assert sum(p.count("Positive Example") for p in prompts) == 119 * n_pos
        assert all(p.startswith(DEFINITION) and p.endswith("\nOutput: ") for p in prompts)


def test_real_task_first_instance_exact_prompts() -> None:
    first = read_sni_records(EDIBLE, "definition").records[0]
    assert (
        first.messages[0].content
        == DEFINITION + "Now complete the following example -\nInput: sink.\nOutput: "
    )
    assert first.messages[1].content == "2"
    assert first.meta["instance_id"] == "task1149-eb053de72ed648c7a4806cb06e224594"
    assert first.meta["references"] == ["2"] and first.meta["task"] == "task1149_item_check_edible"
    assert first.meta["row"] == 0 and first.meta["categories"] == ["Misc."]
    pos = read_sni_records(EDIBLE, "definition+2pos").records[0]
    assert pos.messages[0].content == (
        DEFINITION
        + " Positive Example 1 -\nInput: Glass.\n Output: 2.\n\n"
        + " Positive Example 2 -\nInput: Ice Cream.\n Output: 1.\n\n"
        + "Now complete the following example -\nInput: sink.\nOutput: "
    )
    # " flour" (instance 38) is stripped as the collator strips it
    flour = read_sni_records(EDIBLE, "definition").records[38]
    assert flour.messages[0].content.endswith("Input: flour.\nOutput: ")


def _task(tmp_path: Path, **over) -> Path:
    doc = {
        "Definition": ["Answer with the word's length!"],
        "Positive Examples": [
            {"input": "cat", "output": "3", "explanation": "c-a-t"},
            {"input": "Is it?", "output": "5 letters", "explanation": ""},
            {"input": "house", "output": "5", "explanation": ""},
        ],
        "Negative Examples": [],
        "Instances": [
            {"id": "t-0", "input": "dog", "output": ["3", "three"]},
            {"id": "t-1", "input": "Why?", "output": ["3"]},
        ],
    }
    doc.update(over)
    path = tmp_path / "task900_length.json"
    path.write_text(json.dumps({k: v for k, v in doc.items() if v is not ...}))
    return path


def test_encodings_exact_punctuation_and_references(tmp_path: Path) -> None:
    read = read_sni_records(_task(tmp_path), "definition+2pos")
    assert read.positive_used == 2  # two of the three positive examples
    assert read.records[1].messages[0].content == (
        "Definition: Answer with the word's length!\n\n"
        " Positive Example 1 -\nInput: cat.\n Output: 3.\n\n"
        " Positive Example 2 -\nInput: Is it?\n Output: 5 letters.\n\n"
        "Now complete the following example -\nInput: Why?\nOutput: "
    )
    assert read.records[0].meta["references"] == ["3", "three"]
    task = read_sni_task(_task(tmp_path, **{"Positive Examples": [{"input": "a", "output": "1"}]}))
    assert encode_prompt(task, "b", "definition+2pos").count("Positive Example") == 1
    assert set(ENCODINGS) == {"definition", "definition+2pos"}
    with pytest.raises(ValueError, match="unknown encoding 'def'"):
        read_sni_records(_task(tmp_path), "def")


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"Definition": ...}, "'Definition' is missing"),
        ({"Definition": [3]}, "'Definition' must be a list of strings"),
        ({"Definition": [" "]}, "'Definition' is empty"),
        ({"Positive Examples": ...}, "'Positive Examples' is missing"),
        ({"Positive Examples": [{"input": "a", "output": 1}]}, "'Positive Examples[0].output' is a int"),
        ({"Positive Examples": [{"input": "a", "output": "1"}, {"output": "2"}]}, "'Positive Examples[1].input' is missing"),
        ({"Negative Examples": {"input": "a"}}, "'Negative Examples' must be a list"),
        ({"Instances": ...}, "'Instances' is missing"),
        ({"Instances": {"0": {}}}, "'Instances' must be a list"),
    ],
)  # fmt: skip
def test_malformed_task_file_is_one_error_naming_file_and_key(
    tmp_path: Path, over: dict, message: str
) -> None:
    path = _task(tmp_path, **over)
    with pytest.raises(TaskFileError) as e:
        read_sni_task(path)
    assert str(path) in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_not_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "task1_bad.json"
    path.write_text('{\n  "Definition": [\n')
    with pytest.raises(TaskFileError, match=r"task1_bad.json:3:1: not valid JSON"):
        read_sni_task(path)
    path.write_text("[1, 2]")
    with pytest.raises(TaskFileError, match="one JSON object, got a list"):
        read_sni_task(path)
    with pytest.raises(FileNotFoundError):
        read_sni_task(tmp_path / "absent.json")


def test_malformed_instances_are_rejects_naming_index_and_field(tmp_path: Path) -> None:
    instances = [
        {"id": "ok-0", "input": "dog", "output": ["3"]},
        "not an object",
        {"id": "x", "output": ["1"]},
        {"id": "x", "input": "a", "output": []},
        {"id": "x", "input": "a", "output": ["1", 2]},
        {"id": 7, "input": "a", "output": ["1"]},
        {"id": "x", "input": "  ", "output": ["1"]},
        {"id": "ok-7", "input": "ox", "output": "2"},  # one output as a string is accepted
    ]
    read = read_sni_records(_task(tmp_path, Instances=instances), "definition")
    assert read.n_in == 8 == len(read.records) + len(read.rejects)
    assert [r.meta["instance_id"] for r in read.records] == ["ok-0", "ok-7"]
    got = [(r["index"], r["field"], r["reason"]) for r in read.rejects]
    assert got == [
        (1, None, "wrong_type"),
        (2, "input", "missing_field"),
        (3, "output", "wrong_type"),
        (4, "output[1]", "wrong_type"),
        (5, "id", "wrong_type"),
        (6, "input", "empty_content"),
    ]
    assert all(r["file"] == str(tmp_path / "task900_length.json") for r in read.rejects)
