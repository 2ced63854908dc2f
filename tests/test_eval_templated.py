"""Scoring templated data (evaluate/templated.py) and run recipe folders taken as trained runs.

The records are rendered with the built-in templates (``tasks/templates.py``), as ``instructkit data
template`` writes them; the model's replies are fixed by replacing the batched generation, so each
expected score is worked out by hand from the replies below. The run recipe folder is a tiny trained run
saved under ``RUN/train/model``, as ``instructkit run`` leaves it."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

import instructkit.evaluate.scoring as scoring
from instructkit.evaluate.scoring import LoadedModel, evaluate
from instructkit.records import Record
from instructkit.tasks.templates import get_template, render_records
from instructkit.train.tasks import LabelInfo

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def rendered(template: str, rows: list[dict]) -> list[Record]:
    out = render_records(rows, [get_template(template)])
    assert not out.rejects, out.rejects
    return out.records


def scripted(monkeypatch: pytest.MonkeyPatch, replies: list[str]) -> list[int]:
    """Replace generation with ``replies``, in record order; returns a list that counts the calls."""
    calls: list[int] = []

    def fake(lm, convs, *args):
        assert len(convs) == len(replies), "one scripted reply per record"
        calls.append(len(convs))
        return [[r] for r in replies]

    monkeypatch.setattr(scoring, "generate_replies", fake)
    return calls


FAKE_LM = LoadedModel(None, None, "causal-lm", LabelInfo(), "scripted", False)


def score(monkeypatch: pytest.MonkeyPatch, records: list[Record], replies: list[str]):
    scripted(monkeypatch, replies)
    return evaluate(FAKE_LM, records, progress=False)


# --------------------------------------------------------------------------------------------- per task
def test_classification_accuracy_macro_f1_and_an_unparsed_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"text": f"review {i}", "label": lab} for i, lab in enumerate(["pos", "neg", "pos", "neg"])]
    records = rendered("classification/options-first", rows)
    # right, right, wrong (neg for pos), unparsed (names no option) -> accuracy 2/4
    result = score(monkeypatch, records, ["Answer: Pos!", "neg", "It is neg.", "no idea"])
    task = result.metrics["tasks"]["classification"]
    assert task["records"] == 4 and task["unparsed"] == 1 and task["bad_references"] == 0
    assert result.metrics["classification.accuracy"] == pytest.approx(0.5)
    # pos: P 1/1, R 1/2 -> F1 2/3; neg: P 1/2 (one false positive), R 1/2 (one miss: unparsed) -> F1 1/2
    assert result.metrics["classification.macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert [p["parsed"] for p in result.predictions] == ["pos", "neg", "neg", None]
    assert [p["unparsed"] for p in result.predictions] == [False, False, False, True]
    assert result.info["metric_names"] == ["accuracy"]


def test_ner_entity_f1_over_type_and_text(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {
            "tokens": ["Maria", "Lopez", "joined", "Nordwind", "."],
            "tags": ["B-PER", "I-PER", "O", "B-ORG", "O"],
        },
        {"tokens": ["It", "rained", "."], "tags": ["O", "O", "O"]},
        {"tokens": ["Paris", "is", "big"], "tags": ["B-LOC", "O", "O"]},
    ]
    records = rendered("ner/typed-list", rows)
    assert records[0].messages[-1].content == "PER: Maria Lopez; ORG: Nordwind"
    # (PER, maria lopez) right, (LOC, Nordwind) wrong type; "none" right; the third names no entity
    replies = ["PER: maria lopez\nLOC: Nordwind", "None.", "There is a city in it"]
    result = score(monkeypatch, records, replies)
    task = result.metrics["tasks"]["ner"]
    assert task["records"] == 3 and task["unparsed"] == 1
    # TP 1, predicted 2, gold 3: P 1/2, R 1/3, F1 2PR/(P+R) = 0.4
    assert result.metrics["ner.precision"] == pytest.approx(0.5)
    assert result.metrics["ner.recall"] == pytest.approx(1 / 3)
    assert result.metrics["ner.f1"] == pytest.approx(0.4)


def test_relation_semeval_f1_with_direction(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {
            "text": "the engine of the car",
            "head": "engine",
            "tail": "car",
            "relation": "Component-Whole(e1,e2)",
        },
        {"text": "smoke from the fire", "head": "smoke", "tail": "fire", "relation": "Cause-Effect(e2,e1)"},
        {"text": "a cat and a hat", "head": "cat", "tail": "hat", "relation": "Other"},
    ]
    records = rendered("relation/options-first", rows)
    # right; right relation with the wrong direction; right ("Other")
    result = score(monkeypatch, records, ["Component-Whole(e1,e2)", "Cause-Effect(e1,e2)", "other"])
    task = result.metrics["tasks"]["relation"]
    assert task["records"] == 3 and task["unparsed"] == 0 and task["wrong_direction"] == 1
    # Component-Whole F1 100, Cause-Effect 0 (Other is no class of the average) -> macro 50
    assert result.metrics["relation.semeval_macro_f1"] == pytest.approx(50.0)
    assert result.metrics["relation.semeval_accuracy"] == pytest.approx(200 / 3)


def test_qa_squad_exact_match_and_f1(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {"context": "Normandy is in France.", "question": "Where is Normandy?", "answers": ["France"]},
        {"context": "The battle was in 1066.", "question": "When?", "answers": ["1066"]},
        {"context": "Nothing here.", "question": "Who?", "answers": []},
        {"context": "Blue sky.", "question": "What colour?", "answers": ["blue"]},
    ]
    records = rendered("qa/context-first", rows)
    replies = ['Answer: "France"', "In 1066 AD", "unanswerable", "   "]
    result = score(monkeypatch, records, replies)
    task = result.metrics["tasks"]["qa"]
    assert task["records"] == 4 and task["unparsed"] == 1
    # EM: France, "" == "" (unanswerable) -> 2/4; F1: 1 + 1/2 (1066 of "in 1066 ad") + 0 + 0 over 4
    assert result.metrics["qa.exact_match"] == pytest.approx(50.0)
    assert result.metrics["qa.f1"] == pytest.approx(37.5)


def test_qa_scores_against_every_answer_in_meta(monkeypatch: pytest.MonkeyPatch) -> None:
    row = {
        "context": "Paris, the capital.",
        "question": "Which city?",
        "answers": ["Paris", "the city of Paris"],
    }
    records = rendered("qa/context-first", [row])
    assert records[0].messages[-1].content == "Paris" and records[0].meta["answers"] == row["answers"]
    result = score(monkeypatch, records, ["city of Paris"])
    assert result.metrics["qa.exact_match"] == pytest.approx(100.0)  # matches the second answer


def test_translation_summarization_dialogue_and_code(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [
        *rendered(
            "translation/direct",
            [
                {"source": "Das Haus.", "target": "The house is wonderful.", "source_lang": "de", "target_lang": "en"},
                {"source": "Ja.", "target": "Yes, it is.", "source_lang": "de", "target_lang": "en"},
            ],
        ),
        *rendered("summarization/summarize", [{"document": "A long text.", "summary": "Councils approved trams."}]),
        *rendered(
            "dialogue/continue",
            [
                {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "hello there"}]},
                {"messages": [{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "see you"}]},
            ],
        ),
        *rendered(
            "code/plain",
            [{"prompt": "def f():\n", "tests": "assert f() == 1", "entry_point": "f", "solution": "    return 1\n"}],
        ),
    ]  # fmt: skip
    del records[-1].meta["problem"]  # a code record templated before its problem was kept: cannot be run
    replies = [
        "Translation: The house is wonderful.",  # the label is the parser's to strip: identical
        "Yes, it is.",
        "Summary: council approves tram",  # stemmed: council/councils, approv-, tram/trams
        "hello there",
        "goodbye",  # no word in common
        "```python\ndef f():\n    return 1\n```",
    ]
    result = score(monkeypatch, records, replies)
    m = result.metrics
    assert m["translation.bleu"] == pytest.approx(100.0) and m["translation.chrf"] == pytest.approx(100.0)
    assert m["tasks"]["translation"]["chrf_signature"].count("nc:6") == 1
    assert m["summarization.rouge1"] == pytest.approx(1.0) and m["summarization.rouge2"] == pytest.approx(1.0)
    assert m["dialogue.rougeL"] == pytest.approx(0.5) and "dialogue.rouge1" not in m
    code = m["tasks"]["code"]
    assert code["records"] == 1 and code["no_tests"] == 1 and "tests and entry point" in code["not_scored"]
    assert not any(k.startswith("code.") for k in m)
    assert set(m["tasks"]) == {"translation", "summarization", "dialogue", "code"}


CODE_ROW = {
    "prompt": 'def add(a, b):\n    """The sum."""\n',
    "tests": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
    "entry_point": "add",
    "solution": "    return a + b\n",
}
CODE_REPLIES = [
    "```python\n    return a + b\n```",  # the body that continues the prompt
    "Sure:\n```python\ndef add(a, b):\n    return b + a\n```",  # a whole new definition
    "```python\n    return a - b\n```",  # wrong
    "I cannot help with that.",  # the whole reply is taken as code (no fence): it fails to run
]


def test_code_pass_at_1_runs_each_reply_against_its_records_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The programs handed to the sandbox, with the sandbox's verdicts scripted (the real run is slow)."""
    import instructkit.evaluate.templated as templated

    rows = [CODE_ROW, CODE_ROW, CODE_ROW, {**CODE_ROW, "tests": "assert add(1, 1) == 2"}]
    records = rendered("code/complete", rows)
    assert records[0].meta["problem"] == {k: CODE_ROW[k] for k in ("prompt", "tests", "entry_point")}
    seen: list[tuple[dict, str]] = []

    def verdicts(samples):
        seen.extend(samples)
        return [types.SimpleNamespace(passed=i < 2, status="passed" if i < 2 else "failed") for i in range(4)]

    monkeypatch.setattr(templated, "run_code", verdicts)
    result = score(monkeypatch, records, CODE_REPLIES)
    code = result.metrics["tasks"]["code"]
    assert result.metrics["code.pass@1"] == pytest.approx(0.5) and code["passed"] == 2 and code["scored"] == 4
    assert seen[0][1] == "    return a + b\n" and seen[1][1].startswith("\ndef add(a, b):")
    assert "def check(candidate):\n    pass" in seen[3][0]["test"]  # plain asserts: check() is a no-op
    assert [p["status"] for p in result.predictions] == ["passed", "passed", "failed", "failed"]


@pytest.mark.slow  # starts sandbox worker processes
def test_code_pass_at_1_in_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [CODE_ROW, CODE_ROW, CODE_ROW, {**CODE_ROW, "tests": "assert add(1, 1) == 2"}]
    replies = [*CODE_REPLIES[:3], "```python\ndef add(a, b):\n    return 2\n```"]  # last: passes 1+1 only
    result = score(monkeypatch, rendered("code/complete", rows), replies)
    assert [p["status"] for p in result.predictions] == ["passed", "passed", "failed", "passed"]
    assert result.metrics["code.pass@1"] == pytest.approx(0.75)


# ------------------------------------------------------------------------------------ files and the CLI
def test_plain_chat_data_is_scored_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [
        Record.chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "hello there"}])
    ]
    scripted(monkeypatch, ["hello there"])
    result = evaluate(FAKE_LM, records, ["rouge"], progress=False)
    assert "tasks" not in result.metrics and result.metrics["rougeL"] == pytest.approx(1.0)
    assert result.info["metric_names"] == ["rouge"] and "parsed" not in result.predictions[0]


def test_a_file_mixing_templated_and_plain_records_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    records = rendered("classification/no-options", [{"text": "x", "label": "a"}])
    records.append(Record.chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "yo"}]))
    calls = scripted(monkeypatch, ["a", "yo"])
    with pytest.raises(ValueError, match=r"record 1 .*no meta\.task"):
        evaluate(FAKE_LM, records, progress=False)
    assert calls == []  # refused before anything was generated


def test_metrics_named_by_the_caller_score_templated_data_as_plain_chat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = rendered("classification/no-options", [{"text": "x", "label": "alpha beta"}])
    scripted(monkeypatch, ["Label: alpha"])
    result = evaluate(FAKE_LM, records, ["rouge"], progress=False)
    assert "tasks" not in result.metrics and result.metrics["rouge1"] == pytest.approx(
        0.5
    )  # "label alpha" vs "alpha beta"


def test_cli_scores_a_file_of_mixed_tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from instructkit.cli import app

    records = [
        *rendered("classification/options-after", [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]),
        *rendered("translation/labelled", [{"source": "Ja.", "target": "The house is wonderful.", "source_lang": "de", "target_lang": "en"}]),
    ]  # fmt: skip
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    scripted(monkeypatch, ["pos", "maybe", "The house is wonderful."])
    monkeypatch.setattr(scoring, "load_for_eval", lambda name, task=None: FAKE_LM)
    res = CliRunner().invoke(
        app, ["eval", "-m", "scripted", "-d", str(data), "-o", str(tmp_path / "o")], env=ENV
    )
    assert res.exit_code == 0, res.output
    body = json.loads((tmp_path / "o" / "eval" / "results.json").read_text())
    assert body["metrics"]["classification.accuracy"] == pytest.approx(0.5)
    assert body["metrics"]["tasks"]["classification"]["unparsed"] == 1
    assert body["metrics"]["translation.bleu"] == pytest.approx(100.0)
    assert "classification: 2 records, 1 unparsed replies" in res.output
    assert "translation: 1 records, 0 unparsed replies" in res.output
    preds = [
        json.loads(x)
        for x in (tmp_path / "o" / "eval" / "results.predictions.jsonl").read_text().splitlines()
    ]
    assert [p["task"] for p in preds] == ["classification", "classification", "translation"]


# ------------------------------------------------------------------------------------ run recipe folders
@pytest.fixture(scope="module")
def recipe_run(tiny_llama: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run recipe's folder as ``instructkit run`` leaves it: its trained model in ``train/model/``."""
    from tests.test_export import make_run

    run = tmp_path_factory.mktemp("recipe-run")
    make_run(tiny_llama, run / "train", "full")
    (run / "recipe.yaml").write_text("name: demo\n")
    (run / "stages.json").write_text("{}\n")
    return run


def test_a_run_recipe_folder_is_a_trained_run(recipe_run: Path, tmp_path: Path) -> None:
    from instructkit.train.saved_model import is_trained_run, model_folder

    assert is_trained_run(recipe_run) and model_folder(recipe_run) == recipe_run / "train" / "model"
    assert (
        is_trained_run(recipe_run / "train")
        and model_folder(recipe_run / "train") == recipe_run / "train" / "model"
    )
    assert not is_trained_run(tmp_path) and model_folder(tmp_path) == tmp_path


def test_eval_and_export_take_a_run_recipe_folder(
    recipe_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from instructkit.cli import app

    data = tmp_path / "cls.jsonl"
    recs = rendered(
        "classification/options-first", [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]
    )
    data.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in recs))
    scripted(monkeypatch, ["pos", "pos"])
    runner = CliRunner()
    res = runner.invoke(
        app, ["eval", "-m", str(recipe_run), "-d", str(data), "-o", str(tmp_path / "e")], env=ENV
    )
    assert res.exit_code == 0, res.output
    body = json.loads((tmp_path / "e" / "eval" / "results.json").read_text())
    assert body["trained"] is True and body["metrics"]["classification.accuracy"] == pytest.approx(0.5)

    res = runner.invoke(app, ["export", str(recipe_run), "-o", str(tmp_path / "x")], env=ENV)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x" / "config.json").exists()
    res = runner.invoke(app, ["export", str(tmp_path / "e"), "-o", str(tmp_path / "y")], env=ENV)
    assert res.exit_code == 1 and "train/model/instructkit.json" in " ".join(res.output.split())


# ---------------------------------------------------------------------------------- per-task reply budgets
def test_each_task_is_generated_with_its_own_reply_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mixture's held-out set: classification replies need a few tokens, translation many; each task's
    records are generated in their own call with their budget, and the replies go back to their records."""
    records = [
        *rendered("classification/options-first", [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]),
        *rendered("translation/labelled", [{"source": "Das Haus ist wunderbar.", "target": "The house is wonderful.", "source_lang": "de", "target_lang": "en"}]),
        *rendered("classification/options-first", [{"text": "fine", "label": "pos"}]),
    ]  # fmt: skip
    calls: list[tuple[int, int]] = []
    answer = {"good": "pos", "bad": "pos", "fine": "pos", "Haus": "The house is wonderful."}

    def fake(lm, convs, decoding, batch_size, progress):
        calls.append((len(convs), decoding.max_new_tokens))
        return [[next(v for k, v in answer.items() if k in c[-1]["content"])] for c in convs]

    monkeypatch.setattr(scoring, "generate_replies", fake)
    from instructkit.decoding import Decoding

    result = evaluate(
        FAKE_LM,
        records,
        progress=False,
        decoding=Decoding(max_new_tokens=40),
        task_max_new_tokens={"classification": 3},
    )
    assert sorted(calls) == [(1, 40), (3, 3)]
    assert [p["parsed"] for p in result.predictions] == ["pos", "pos", "The house is wonderful.", "pos"]
    assert result.metrics["classification.accuracy"] == pytest.approx(2 / 3)
    assert result.metrics["translation.bleu"] == pytest.approx(100.0)
    assert result.info["task_max_new_tokens"] == {"classification": 3}


def test_cli_task_reply_budgets_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from instructkit.cli import app

    records = rendered("classification/options-after", [{"text": "good", "label": "pos"}])
    data = tmp_path / "one.jsonl"
    data.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    seen: list[int] = []
    monkeypatch.setattr(
        scoring, "generate_replies", lambda lm, convs, dec, *a: seen.append(dec.max_new_tokens) or [["pos"]]
    )
    monkeypatch.setattr(scoring, "load_for_eval", lambda name, task=None: FAKE_LM)
    args = ["eval", "-m", "scripted", "-d", str(data), "-o", str(tmp_path / "o")]
    res = CliRunner().invoke(app, [*args, "--task-max-new-tokens", "classification=5"], env=ENV)
    assert res.exit_code == 0, res.output
    assert seen == [5]
    res = CliRunner().invoke(app, [*args, "--task-max-new-tokens", "clasification=5"], env=ENV)
    assert res.exit_code == 2 and "clasification=5" in res.output and "--task-max-new-tokens" in res.output
