"""The three tasks of recipes/continual/three-tasks.yaml: the shipped files are exactly what
examples/data/continual/make_data.py makes from its sources, and each task's answers have the form its
metric reads (one label word; `type: span` lines or `none`; a Python function that compiles)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from instructkit.formats import read_records

ROOT = Path(__file__).parent.parent
DATA = ROOT / "examples" / "data" / "continual"
FILES = [f"{t}.{s}.jsonl" for t in ("sentiment", "ner", "code") for s in ("train", "test")]


def _make_data():
    spec = importlib.util.spec_from_file_location("make_data", DATA / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_files_are_what_the_script_makes(tmp_path: Path) -> None:
    _make_data().main(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), (
            f"{name} differs from a fresh run of make_data.py: rerun it and commit the files"
        )


@pytest.mark.parametrize("task", ["sentiment", "ner", "code"])
def test_splits_are_disjoint_chats(task: str) -> None:
    train = read_records(DATA / f"{task}.train.jsonl")
    test = read_records(DATA / f"{task}.test.jsonl")
    assert len(train) >= 60 and 20 <= len(test) <= 60
    for rec in train + test:
        assert [m.role for m in rec.messages] == ["user", "assistant"]
        assert rec.meta["task"] in (task, "ner-as-text") and rec.meta["source"]
    ids = [r.meta["id"] for r in train + test]
    assert len(set(ids)) == len(ids), "a record id repeats"
    prompts = {r.messages[0].content for r in train}
    assert not prompts & {r.messages[0].content for r in test}, "a test prompt is also in train"


def test_sentiment_answers_are_one_label_word_balanced_in_test() -> None:
    test = read_records(DATA / "sentiment.test.jsonl")
    answers = [r.messages[1].content for r in test]
    assert {a: answers.count(a) for a in set(answers)} == {"positive": 15, "negative": 15, "neutral": 15}
    lines = (ROOT / "examples" / "data" / "sentiment.jsonl").read_text(encoding="utf-8").splitlines()
    source = {json.loads(line)["meta"]["id"]: json.loads(line)["label"] for line in lines}
    for r in read_records(DATA / "sentiment.train.jsonl") + test:
        assert r.messages[1].content == source[r.meta["id"].removeprefix("sentiment-")]


def test_ner_answers_are_type_span_lines_or_none() -> None:
    line = re.compile(
        r"^(company|facility|geo-loc|movie|musicartist|other|person|product|sportsteam|tvshow): \S.*$"
    )
    nones = 0
    for r in read_records(DATA / "ner.train.jsonl") + read_records(DATA / "ner.test.jsonl"):
        answer, tweet = r.messages[1].content, r.messages[0].content.split("Tweet: ", 1)[1]
        if answer == "none":
            nones += 1
            continue
        for ent in answer.split("\n"):
            assert line.match(ent), ent
            assert ent.split(": ", 1)[1] in tweet, f"{r.meta['id']}: span {ent!r} is not in the tweet"
    assert 0 < nones < 100


def test_code_answers_compile_and_define_the_named_function() -> None:
    for r in read_records(DATA / "code.train.jsonl") + read_records(DATA / "code.test.jsonl"):
        name = re.search(r"`(\w+)\(", r.messages[0].content).group(1)
        source = r.messages[1].content
        compile(source, r.meta["id"], "exec")
        assert source.startswith(f"def {name}(")
