"""Format readers and writers: fixed fixtures per format, detection, and read → write → read identity."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructkit.formats import RecordReader, detect_format, format_names, read_records, write_records
from instructkit.records import Message, Record

from .conftest import FIXTURES, without_source

FIXTURE_FORMATS = {
    "alpaca.json": "alpaca",
    "dolly.jsonl": "dolly",
    "sharegpt.json": "sharegpt",
    "openai.jsonl": "openai",
    "prompt_completion.jsonl": "prompt-completion",
    "self_instruct.jsonl": "self-instruct",
    "conll_iob1.txt": "conll",
    "conll_bio.conll": "conll",
    "instructkit.jsonl": "instructkit",
}
CONTAINERS = [".jsonl", ".json", ".parquet", ".jsonl.gz", ".parquet.gz"]


def _msgs(*pairs: tuple[str, str]) -> list[Message]:
    return [Message(r, c) for r, c in pairs]


@pytest.mark.parametrize("name,fmt", FIXTURE_FORMATS.items())
def test_fixture_detected(name: str, fmt: str) -> None:
    reader = RecordReader(FIXTURES / "formats" / name)
    records = list(reader)
    assert reader.fmt == fmt
    assert records and reader.rejects == []


def test_alpaca_fixture_values() -> None:
    recs = read_records(FIXTURES / "formats" / "alpaca.json")
    assert recs[0].messages == _msgs(("user", "Give the opposite of the word.\n\ncold"), ("assistant", "hot"))
    assert recs[1].messages == _msgs(("user", "Name a primary colour."), ("assistant", "Red."))
    assert recs[2].messages == _msgs(
        ("system", "Answer briefly."),
        ("user", "Name a primary colour."),
        ("assistant", "Red."),
        ("user", "And one more?"),
        ("assistant", "Blue."),
    )
    assert recs[2].meta["source"] == "alpaca.json"


def test_dolly_sharegpt_openai_prompt_completion_values() -> None:
    dolly = read_records(FIXTURES / "formats" / "dolly.jsonl")
    assert dolly[0].messages[0].content == (
        "When did the Eiffel Tower open?\n\nThe Eiffel Tower opened in 1889 for the World's Fair."
    )
    assert dolly[0].meta["task"] == "closed_qa"
    sg = read_records(FIXTURES / "formats" / "sharegpt.json")
    assert [m.role for m in sg[0].messages] == ["system", "user", "assistant", "user", "assistant"]
    assert sg[0].meta["id"] == "sg-1" and sg[1].messages[1].content == "¡Hola!"
    oa = read_records(FIXTURES / "formats" / "openai.jsonl")
    assert oa[1].messages[0].content == "Spell cat."
    pc = read_records(FIXTURES / "formats" / "prompt_completion.jsonl")
    assert pc[1].messages == _msgs(("user", "2 + 3 ="), ("assistant", "5"))


def test_self_instruct_one_record_per_instance() -> None:
    recs = read_records(FIXTURES / "formats" / "self_instruct.jsonl")
    assert len(recs) == 3
    assert recs[1].messages[0].content == "Give the antonym of the word.\n\nearly"
    assert recs[1].meta["id"] == "seed_task_0#1" and recs[1].meta["group"] == "seed_task_0"
    assert recs[2].meta["is_classification"] is True and recs[2].meta["task"] == "sentiment"


def test_conll_iob1_becomes_iob2() -> None:
    recs = read_records(FIXTURES / "formats" / "conll_iob1.txt")
    assert [r.tokens for r in recs] == [["John", "Smith", "visited", "Paris"], ["Anna", "B", "met"]]
    assert recs[0].tags == ["B-PER", "I-PER", "O", "B-LOC"]
    assert recs[1].tags == ["B-PER", "B-PER", "O"]  # IOB1's B- splits two adjacent entities
    bio = read_records(FIXTURES / "formats" / "conll_bio.conll")
    assert bio[0].tags == ["B-PER", "O", "O", "B-ORG", "I-ORG", "O"]
    assert bio[1].tokens == ["Hello"]


def test_native_holds_every_kind() -> None:
    recs = read_records(FIXTURES / "formats" / "instructkit.jsonl")
    assert [r.kind for r in recs] == ["chat", "tokens", "text"]
    assert recs[0].meta["lineage"] == ["written by hand"]
    assert recs[2].label == "mixed"


@pytest.mark.parametrize("name,fmt", FIXTURE_FORMATS.items())
@pytest.mark.parametrize("container", CONTAINERS)
def test_fixture_round_trip(tmp_path: Path, name: str, fmt: str, container: str) -> None:
    first = read_records(FIXTURES / "formats" / name)
    if fmt == "conll":
        container = ".conll.gz" if container.endswith(".gz") else ".conll"
    out = tmp_path / f"out{container}"
    assert write_records(first, out, fmt) == []
    second = read_records(out)  # detected again from the written content
    again = tmp_path / f"again{container}"
    write_records(second, again, fmt)
    third = read_records(again)
    assert [without_source(r) for r in second] == [without_source(r) for r in first]
    assert [without_source(r) for r in third] == [without_source(r) for r in first]


def test_detection_order_for_overlapping_keys() -> None:
    assert detect_format({"instruction": "a", "instances": [], "output": "x"}) == "self-instruct"
    assert detect_format({"instruction": "a", "input": "", "output": "b"}) == "alpaca"
    assert detect_format({"messages": [], "meta": {}}) == "instructkit"
    assert detect_format({"messages": []}) == "openai"
    assert detect_format({"foo": 1}) is None


def test_unsupported_records_are_rejects_not_silence(tmp_path: Path) -> None:
    recs = read_records(FIXTURES / "formats" / "instructkit.jsonl")
    rejects = write_records(recs, tmp_path / "x.jsonl", "openai", on_error="skip")
    assert [r["reason"] for r in rejects] == ["unsupported", "unsupported"]
    assert len(read_records(tmp_path / "x.jsonl")) == 1


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.jsonl"
    recs = read_records(FIXTURES / "formats" / "openai.jsonl")
    write_records(recs, out, "openai")
    before = out.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        write_records(recs[:1], out, "openai")
    assert out.read_bytes() == before  # the old file is whole, and no temp file is left behind
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


# ------------------------------------------------------------------------------- property tests
text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40
).filter(lambda s: s.strip() != "")
word = st.text(alphabet=string.ascii_letters + string.digits + "éü-.,'", min_size=1, max_size=8).filter(
    lambda s: not s.startswith("-DOCSTART-")
)
ident = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=10)


@st.composite
def chat_records(draw, system: bool = True, multi: bool = True) -> Record:
    msgs = []
    if system and draw(st.booleans()):
        msgs.append(Message("system", draw(text)))
    for _ in range(draw(st.integers(1, 3)) if multi else 1):
        msgs += [Message("user", draw(text)), Message("assistant", draw(text))]
    meta = {}
    if draw(st.booleans()):
        meta["id"] = draw(ident)
    if draw(st.booleans()):
        meta["task"] = draw(ident)
    return Record(messages=msgs, meta=meta).validated()


@st.composite
def tagged_records(draw) -> Record:
    n = draw(st.integers(1, 8))
    tokens = [draw(word) for _ in range(n)]
    tags, prev = [], "O"
    for _ in range(n):
        choices = ["O", "B-PER", "B-LOC"] + ([f"I-{prev[2:]}"] if prev != "O" else [])
        prev = draw(st.sampled_from(choices))
        tags.append(prev)
    return Record(tokens=tokens, tags=tags, meta={}).validated()


@st.composite
def labelled_records(draw) -> Record:
    return Record(
        text=draw(text), label=draw(st.sampled_from(["pos", "neg", "neutral"])), meta={"id": draw(ident)}
    )


# What each format can hold, as record strategies.
FORMAT_STRATEGIES = {
    "instructkit": st.one_of(chat_records(), tagged_records(), labelled_records()),
    "openai": chat_records(),
    "sharegpt": chat_records(),
    "alpaca": chat_records(),
    "dolly": chat_records(system=False, multi=False),
    "prompt-completion": chat_records(system=False, multi=False),
    "self-instruct": chat_records(system=False, multi=False),
    "conll": tagged_records(),
}


def round_trip_formats() -> list[str]:
    """Every registered format: read from the registry, so a new format module is in the round-trip matrix
    without an edit here. One the table above does not know gets single-turn chats (what a chat format
    holds at least)."""
    return format_names()


def _strategy(fmt: str) -> st.SearchStrategy:
    return FORMAT_STRATEGIES[fmt] if fmt in FORMAT_STRATEGIES else chat_records(system=False, multi=False)


def _kept_meta(fmt: str, rec: Record) -> dict:
    """The meta a format is documented to keep (openai keeps none, self-instruct its own ids)."""
    if fmt in ("openai", "self-instruct", "conll"):
        return {}
    return {k: v for k, v in rec.meta.items() if k in ("id", "task", "lineage")}


@pytest.mark.parametrize("fmt", round_trip_formats())
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, fmt: str) -> None:
    folder = tmp_path_factory.mktemp(fmt)
    containers = [".conll", ".conll.gz"] if fmt == "conll" else CONTAINERS

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        records=st.lists(_strategy(fmt), min_size=1, max_size=5),
        container=st.sampled_from(containers),
    )
    def check(records: list[Record], container: str) -> None:
        a, b = folder / f"a{container}", folder / f"b{container}"
        assert write_records(records, a, fmt) == []
        first = read_records(a, fmt=fmt)
        assert [r.content() for r in first] == [r.content() for r in records]
        assert [_kept_meta(fmt, r) for r in first] == [_kept_meta(fmt, r) for r in records]
        write_records(first, b, fmt)
        second = read_records(b, fmt=fmt)
        assert [without_source(r) for r in second] == [without_source(r) for r in first]

    check()
