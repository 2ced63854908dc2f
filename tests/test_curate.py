"""Curation: every record accounted for, each filter's reason, splits that never leak clusters."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.data.base import STEPS, StepConfigError, build_step
from instructkit.data.curate_config import DEFAULT_STEPS, CurateConfig
from instructkit.data.normalize import normalize_text
from instructkit.data.pii import find_pii, mask_pii
from instructkit.data.pipeline import curate
from instructkit.data.split import SplitConfig, split_records
from instructkit.data.stats import verb_noun
from instructkit.records import Record

from .conftest import FIXTURES

DIRTY = [FIXTURES / "curate" / "dirty.jsonl", FIXTURES / "curate" / "more.alpaca.json"]


def config(**kw) -> CurateConfig:
    # modality is no longer a default step (it belongs to generated instructions); added here so the
    # planted "Draw a picture" record is still rejected.
    steps = [*DEFAULT_STEPS, "modality", {"step": "language", "languages": ["en"]}]
    return CurateConfig(steps=steps, **kw)


def _chat(u: str, a: str, **meta) -> Record:
    return Record.chat([{"role": "user", "content": u}, {"role": "assistant", "content": a}], **meta)


@pytest.fixture(scope="module")
def dirty_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("curated")
    return curate(DIRTY, out, config()), out


def test_accounting_holds_and_card_shows_it(dirty_run) -> None:
    result, out = dirty_run
    card = json.loads((out / "card.json").read_text())
    kept = sum(len(Path(out, f).read_text().splitlines()) for f in ("train.jsonl", "val.jsonl", "test.jsonl"))
    rejected = len((out / "rejects.jsonl").read_text().splitlines())
    assert card["accounting"] == {"in": 28, "kept": kept, "rejected": rejected, "balanced": True}
    assert kept + rejected == 28 and kept == 15
    md = (out / "card.md").read_text()
    assert f"**28 records in = {kept} kept + {rejected} rejected** (balanced)" in md
    # Per step: in = kept + dropped, and each step's in is the previous step's kept.
    prev = None
    for st in card["steps"]:
        assert st["in"] == st["kept"] + sum(st["dropped"].values()), st
        assert prev is None or st["in"] == prev
        prev = st["kept"]
    assert [s["sha256"] for s in card["sources"]] and all(len(s["sha256"]) == 64 for s in card["sources"])


def test_each_planted_problem_is_rejected_with_its_reason(dirty_run) -> None:
    result, _ = dirty_run
    by_reason = Counter(r["reason"] for r in result.rejects)
    assert by_reason == {
        "malformed_json": 1,
        "empty_content": 1,
        "consecutive_user_turns": 1,
        "output_equals_input": 1,
        "refusal": 1,
        "needs_modality": 1,
        "repetition": 1,
        "too_long": 1,
        "exact_duplicate": 2,
        "near_duplicate": 1,
        "contaminated": 1,
        "wrong_language": 1,
    }
    ids = {r["reason"]: r["id"] for r in result.rejects if r["step"] != "read"}
    assert (
        ids["near_duplicate"] == "near-dup"
        and ids["contaminated"] == "contaminated"
        and ids["refusal"] == "refusal"
    )
    contaminated = next(r for r in result.rejects if r["reason"] == "contaminated")
    assert contaminated["detail"].startswith("humaneval HumanEval/2")
    read = next(r for r in result.rejects if r["reason"] == "malformed_json")
    assert read["step"] == "read" and read["line"] == 6 and read["source"].endswith("dirty.jsonl")


def test_pii_is_masked_and_kept(dirty_run) -> None:
    result, _ = dirty_run
    kept = [r for recs in result.splits.values() for r in recs]
    pii = next(r for r in kept if r.meta.get("id") == "pii")
    assert "[EMAIL]" in pii.messages[0].content and "@" not in pii.messages[1].content


def test_same_seed_gives_byte_identical_outputs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    curate(DIRTY, a, config())
    curate(DIRTY, b, config())
    curate(DIRTY, c, config(split=SplitConfig(seed=7, val=0.2, test=0.2)))
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "rejects.jsonl", "card.json", "card.md"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "train.jsonl").read_bytes() != (c / "train.jsonl").read_bytes()


def test_no_near_dup_cluster_spans_two_splits() -> None:
    import random

    rng = random.Random(0)
    vocab = [
        f"{a}{b}"
        for a in ("bri", "mol", "tak", "zen", "pur", "lox", "ved", "gan")
        for b in ("ter", "ka", "mon", "dus", "pel", "rix", "ona", "sul")
    ]
    records = []
    for i in range(60):
        base = "Write about " + " ".join(rng.sample(vocab, 8))
        records.append(_chat(base, f"Story {i}.", id=f"r{i}-a"))
        records.append(_chat(base.upper() + "!", f"Another story {i}.", id=f"r{i}-b"))
        records.append(_chat(base.replace("Write", "Please write"), f"Third story {i}.", id=f"r{i}-c"))
    step = build_step({"step": "near_dedup", "threshold": 0.7, "action": "mark"})
    for rec, verdict in zip(records, step.run(records), strict=True):
        assert verdict.reason is None
        rec.meta.update(verdict.meta)
    clusters = Counter(r.meta["cluster"] for r in records)
    assert len(clusters) == 60 and set(clusters.values()) == {3}
    splits = split_records(records, SplitConfig(val=0.2, test=0.2, seed=3))
    where = {}
    for name, recs in splits.items():
        for r in recs:
            assert where.setdefault(r.meta["cluster"], name) == name, "a cluster spans two splits"
    assert all(len(v) > 0 for v in splits.values())


def test_stratified_split_keeps_shares() -> None:
    records = [
        _chat(f"question {i} about {t}", f"answer {i}", task=t) for t in ("a", "b") for i in range(100)
    ]
    splits = split_records(records, SplitConfig(val=0.1, test=0.2, seed=0, stratify="task"))
    for name, share in (("val", 0.1), ("test", 0.2)):
        counts = Counter(r.meta["task"] for r in splits[name])
        assert counts == {"a": int(100 * share), "b": int(100 * share)}


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(StepConfigError, match="unknown parameter 'treshold'"):
        build_step({"step": "near_dedup", "treshold": 0.5})
    with pytest.raises(StepConfigError, match="unknown step 'dedupe'"):
        build_step("dedupe")
    bad = tmp_path / "c.yaml"
    bad.write_text("steps: [normalize]\nsplitt: {}\n")
    with pytest.raises(StepConfigError, match="c.yaml: curate config: unknown key 'splitt'"):
        CurateConfig.from_yaml(bad)
    bad.write_text("split: {val: 0.1, shuffle: true}\n")
    with pytest.raises(StepConfigError, match="unknown key 'split.shuffle'"):
        CurateConfig.from_yaml(bad)


def test_normalize_keeps_meaning() -> None:
    text = "Cafe\u0301 menu\r\n\r\n\r\n\r\n  def f():\r\n      return 1   \n\u200b"
    assert normalize_text(text) == "Café menu\n\n  def f():\n      return 1"
    step = build_step("normalize")
    rec = step.apply(_chat("User: hi there", "Assistant: Hello!"))
    assert [m.content for m in rec.messages] == ["hi there", "Hello!"]


def test_pii_patterns() -> None:
    text = (
        "Mail bob@corp.io or call +1 415-555-0132; key sk-abcdefghijklmnopqrstuvwx. Version 3.11, year 2024."
    )
    assert sorted(k for k, _ in find_pii(text)) == ["email", "key", "phone"]
    assert mask_pii(text) == "Mail [EMAIL] or call [PHONE]; key [KEY]. Version 3.11, year 2024."


@pytest.mark.parametrize(
    "step,record,reason",
    [
        ("identical", _chat("Say hi", "say  HI"), "output_equals_input"),
        ("refusal", _chat("Opinion?", "I'm sorry, but I cannot share that."), "refusal"),
        ("modality", _chat("Plot the sales by month.", "Done."), "needs_modality"),
        ({"step": "length", "min": 5}, _chat("Hi", "Yo"), "too_short"),
        ({"step": "length", "max": 3, "field": "reply"}, _chat("Hi", "one two three four"), "too_long"),
        ("repetition", _chat("Go", "la " * 40), "repetition"),
        (
            {"step": "language", "languages": ["en"]},
            _chat("Wie spät ist es heute Abend in Berlin, bitte?", "Acht."),
            "wrong_language",
        ),
    ],
)
def test_filter_reasons(step, record: Record, reason: str) -> None:
    verdict = build_step(step).keep(record)
    assert verdict is not True
    assert (verdict if isinstance(verdict, bool) else verdict[1]) in (False, reason)
    if not isinstance(verdict, bool):
        assert verdict[1] == reason
    else:
        assert build_step(step).reason == reason


def test_filters_keep_ordinary_records() -> None:
    rec = _chat(
        "Write a Python function that reverses a list of numbers in place.", "def rev(xs):\n    xs.reverse()"
    )
    for name in ("identical", "refusal", "modality", "repetition", "empty", "language"):
        assert build_step(name).keep(rec) is True, name


def test_modality_looks_at_the_instruction_not_its_input(tmp_path: Path) -> None:
    from instructkit.formats import read_records

    rows = [
        {"instruction": "Classify the topic of this news article.", "input": "The festival's music drew 40,000 fans.", "output": "Entertainment"},
        {"instruction": "Classify the topic of this news article.", "input": "Clerks must file the forms by May.", "output": "Politics"},
        {"instruction": "Summarize the abstract.", "input": "We draw on graphs and a map of images to go to scale.", "output": "A study."},
        {"instruction": "Draw a picture of the article's main scene.", "input": "A quiet town.", "output": "..."},
        {"instruction": "Describe the plot of Hamlet in two sentences.", "input": "", "output": "..."},
    ]  # fmt: skip
    path = tmp_path / "news.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    step = build_step("modality")
    verdicts = [step.keep(r) for r in read_records(path)]
    assert verdicts[:3] == [True, True, True]  # words in the input, not the task: kept (dropped before)
    assert verdicts[3] == (False, "needs_modality", "draw")
    assert verdicts[4] == (False, "needs_modality", "plot")  # the list is Self-Instruct's, plot of a play too
    # A chat's instruction is its first user turn's opening paragraph.
    assert step.keep(_chat("Translate this sentence.\n\nShe went to the map shop.", "Elle ...")) is True
    assert "modality" not in [s if isinstance(s, str) else s.get("step") for s in DEFAULT_STEPS]


def test_verb_noun_light_parser() -> None:
    assert verb_noun("Write a short poem about the sea.") == ("write", "poem")
    assert verb_noun("Please give me three ideas for dinner") == ("give", "ideas")
    assert verb_noun("What is the capital of Peru?") == ("?", None)


def test_cli_curate_and_stats(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cur"
    result = runner.invoke(app, ["data", "curate", *map(str, DIRTY), "-o", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "records in 28 = kept" in result.output
    result = runner.invoke(app, ["data", "stats", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("lengths", "turns", "balance", "verb_noun"):
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", sorted(STEPS))
def test_every_registered_step_builds_by_name_and_rebuilds_from_its_params(name: str) -> None:
    """Read from the registry, so a new step module is in this matrix without an edit here."""
    step = build_step(name)
    assert type(step) is STEPS[name] and step.name == name
    assert build_step({"step": name, **step.params()}) == step
    with pytest.raises(StepConfigError, match="no_such_param"):
        build_step({"step": name, "no_such_param": 1})
