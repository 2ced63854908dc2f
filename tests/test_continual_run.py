"""The continual runner (``instructkit continual``): the recipe's errors by dotted path, a 2-3 task run end to
end on a tiny model per strategy (R filled, lineage, data card and report written), a rerun skipped, a
round killed mid-training resumed to the weights of an uninterrupted one, and the adapters strategy's
isolation and routing. Tiny 2-layer models, a few optimizer steps a round."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import yaml

from instructkit.continual.recipe import ContinualRecipeError, load_recipe, read_recipe
from instructkit.continual.runner import run_continual
from instructkit.formats import write_records
from instructkit.records import Record

NAMES = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis"]
PLACES = ["Paris", "Lagos", "Osaka", "Lima", "Oslo", "Quito"]
GOOD = ["great battery", "lovely screen", "fast delivery", "kind staff", "tasty food", "solid build"]
BAD = ["broken charger", "cold fries", "rude staff", "late delivery", "cracked case", "slow app"]


def _sentiment(rng: random.Random, n: int) -> list[Record]:
    out = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        thing = rng.choice(GOOD if label == "positive" else BAD)
        text = (
            f"Review {i}: the {thing} made my week."
            if label == "positive"
            else f"Review {i}: the {thing} ruined it."
        )
        out.append(Record.chat([{"role": "user", "content": f"Label the sentiment of this review.\n{text}"},
                                {"role": "assistant", "content": label}], id=f"s{i}"))  # fmt: skip
    return out


def _ner(rng: random.Random, n: int) -> list[Record]:
    out = []
    for i in range(n):
        who, where = rng.choice(NAMES), rng.choice(PLACES)
        if i % 3 == 0:
            sent, ans = f"nothing happened on day {i} at all", "none"
        else:
            sent, ans = f"{who} flew to {where} on day {i}", f"person: {who}\nlocation: {where}"
        out.append(Record.chat([{"role": "user", "content": f"List the named entities as type: span lines.\n{sent}"},
                                {"role": "assistant", "content": ans}], id=f"n{i}"))  # fmt: skip
    return out


def _code(rng: random.Random, n: int) -> list[Record]:
    ops = [("sum", "+"), ("difference", "-"), ("product", "*")]
    out = []
    for i in range(n):
        word, op = ops[i % 3]
        fn = f"f{i}"
        out.append(Record.chat([{"role": "user", "content": f"Write a Python function {fn}(a, b) returning the {word} of a and b."},
                                {"role": "assistant", "content": f"def {fn}(a, b):\n    return a {op} b"}], id=f"c{i}"))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def task_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("continual-data")
    rng = random.Random(0)
    files = {}
    for name, make in (("sentiment", _sentiment), ("ner", _ner), ("code", _code)):
        recs = make(rng, 26)
        write_records(recs[:20], folder / f"{name}.jsonl")
        write_records(recs[20:], folder / f"{name}_test.jsonl")
        files[name] = folder / f"{name}.jsonl"
        files[f"{name}_test"] = folder / f"{name}_test.jsonl"
    write_records(_code(random.Random(1), 4), folder / "general.jsonl")
    files["general"] = folder / "general.jsonl"
    return files


def recipe_dict(
    files: dict[str, Path], model: str, out: Path, strategy: dict, n_tasks: int = 2, **kw
) -> dict:
    tasks = [
        {"name": "sentiment", "train": str(files["sentiment"]), "test": str(files["sentiment_test"]),
         "metric": "accuracy", "labels": ["positive", "negative"], "max_new_tokens": 4},
        {"name": "ner", "train": str(files["ner"]), "test_share": 0.2, "metric": "entity-f1", "max_new_tokens": 8},
        {"name": "code", "train": str(files["code"]), "test": str(files["code_test"]), "metric": "rouge",
         "max_new_tokens": 8},
    ][:n_tasks]  # fmt: skip
    d = {
        "name": kw.pop("name", strategy["name"]),
        "output_dir": str(out),
        "model": model,
        "task": "causal-lm",
        "method": {"name": "lora", "r": 4, "alpha": 8},
        "strategy": strategy,
        "train": {
            "optim": {"lr": 5e-3, "batch_size": 4, "max_steps": 4},
            "data": {"val_share": 0, "max_length": 64},
            "save_every_steps": 2,
            "logging_steps": 1,
            "bf16": "false",
        },
        "tasks": tasks,
        "seed": 0,
    }
    d.update(kw)
    return d


def _run(files, model, out, strategy, **kw):
    recipe = load_recipe(recipe_dict(files, model, out, strategy, **kw))
    return run_continual(recipe, progress=False, log=lambda m: None)


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


# ----------------------------------------------------------------------------------------- recipe errors
@pytest.mark.parametrize(
    ("patch", "key"),
    [
        (
            {"tasks": [{"name": "a", "train": "x.jsonl", "test": "y.jsonl", "metric": "perplexity"}]},
            "'tasks[0].metric'",
        ),
        ({"tasks": [{"name": "a", "train": "x.jsonl", "metric": "rouge"}]}, "'tasks[0].test'"),
        (
            {"tasks": [{"name": "a", "train": "x.jsonl", "test": "y", "tset_share": 0.1}]},
            "'tasks[0].tset_share'",
        ),
        ({"strategy": {"name": "replay"}}, "'strategy.ratio'"),
        ({"strategy": {"name": "replya", "ratio": 0.1}}, "'strategy.name'"),
        ({"strategy": {"name": "ewc", "lam": -1}}, "'strategy.lam'"),
        ({"train": {"model": "x"}}, "'train.model'"),
        ({"task": "token-classification"}, "'task'"),
        ({"seed": "abc"}, "'seed'"),
        (
            {"tasks": [{"name": "a", "train": "x", "test": "y", "metric": "rouge", "labels": ["p", "n"]}]},
            "'tasks[0].labels'",
        ),
    ],
)
def test_recipe_errors_name_the_dotted_key(patch, key):
    base = {"name": "r", "tasks": [{"name": "a", "train": "x.jsonl", "test": "y.jsonl", "metric": "rouge"}]}
    with pytest.raises(ContinualRecipeError) as e:
        load_recipe({**base, **patch}, source="c.yaml")
    assert key in str(e.value) and str(e.value).startswith("c.yaml")


def test_recipe_errors_for_files_and_train_settings(tmp_path, task_files, tiny_llama):
    d = recipe_dict(task_files, tiny_llama, tmp_path, {"name": "naive"})
    d["tasks"][1]["train"] = str(tmp_path / "missing.jsonl")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ContinualRecipeError, match=r"c.yaml: 'tasks\[1\].train': no such file"):
        run_continual(read_recipe(path), recipe_path=path, progress=False, log=lambda m: None)
    d = recipe_dict(task_files, tiny_llama, tmp_path, {"name": "naive"})
    d["train"]["optim"]["lr"] = -1
    with pytest.raises(ContinualRecipeError, match=r"'train.optim.lr'"):
        run_continual(load_recipe(d), progress=False, log=lambda m: None)
    d = recipe_dict(task_files, tiny_llama, tmp_path, {"name": "adapters"})
    d["method"] = {"name": "full"}
    with pytest.raises(ContinualRecipeError, match=r"'method.name'.*lora"):
        run_continual(load_recipe(d), progress=False, log=lambda m: None)
    # a folder that holds other files and no continual.yaml is not taken over
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    d = recipe_dict(task_files, tiny_llama, tmp_path, {"name": "naive"}, name="taken")
    with pytest.raises(ContinualRecipeError, match="not a run folder"):
        run_continual(load_recipe(d), progress=False, log=lambda m: None)
    # --set overrides go through the same checks
    with pytest.raises(ContinualRecipeError, match=r"'strategy.ratio'"):
        read_recipe(path, {"strategy": {"name": "replay", "ratio": "lots"}})


# -------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_naive_run_fills_r_writes_lineage_and_report_and_reruns_skip(tmp_path, task_files, tiny_llama):
    res = _run(task_files, tiny_llama, tmp_path, {"name": "naive"}, general=str(task_files["general"]))
    run = res.run_dir
    assert res.ran == ["round-base", "round-0", "round-1"]
    m = res.matrix
    assert all(v is not None for v in m.untouched) and all(v is not None for v in m.rounds[0] + m.rounds[1])
    assert all(0 <= v <= 100 for v in m.untouched + m.rounds[0] + m.rounds[1])
    assert m.general_untouched is not None and len(m.general) == 2
    lineage = json.loads((run / "round-1" / "lineage.json").read_text())
    assert lineage["parent"]["round"] == "round-0" and lineage["parent"]["continues_weights"]
    assert (
        lineage["data_card_sha256"]
        == hashlib.sha256((run / "round-1/data/card.json").read_bytes()).hexdigest()
    )
    card = json.loads((run / "round-1" / "data" / "card.json").read_text())
    assert card["records_in"] == 20 and card["held_out_for_test"] == 4
    assert card["kept"] + sum(card["rejected"].values()) + card["held_out_for_test"] == card["records_in"]
    assert (run / "round-1" / "train" / "model" / "adapter_model.safetensors").is_file()
    report = (run / "report.md").read_text()
    assert "| untouched |" in report and "BWT" in report and "Lopez-Paz" in report
    assert "<svg" in (run / "report.html").read_text()
    summary = json.loads((run / "matrix.json").read_text())["summary"]
    assert summary["BWT"] == pytest.approx(m.rounds[1][0] - m.rounds[0][0])
    # round 1 continued from round 0's weights: its starting adapter is round 0's, not a fresh one
    weights = _hashes(run / "round-0" / "train" / "model")

    again = _run(task_files, tiny_llama, tmp_path, {"name": "naive"}, general=str(task_files["general"]))
    assert again.ran == [] and again.skipped == ["round-base", "round-0", "round-1"]
    assert _hashes(run / "round-0" / "train" / "model") == weights
    assert again.matrix.to_dict() == m.to_dict()

    # a new general set rescores every round without retraining any (same weights, nothing trained)
    logs: list[str] = []
    d = recipe_dict(task_files, tiny_llama, tmp_path, {"name": "naive"}, general=str(task_files["code_test"]))
    third = run_continual(load_recipe(d), progress=False, log=logs.append)
    assert third.ran == ["round-base", "round-0", "round-1"]
    assert sum("training up to date" in line for line in logs) == 2
    assert not any("[train]" in line for line in logs)
    assert _hashes(run / "round-0" / "train" / "model") == weights
    assert third.matrix.rounds[1][:2] == m.rounds[1][:2]
    assert json.loads((run / "round-1" / "scores.json").read_text())["general"]["n"] == 6  # was 4


STRATEGY_ROWS = {
    "naive": {"name": "naive"},
    "replay": {"name": "replay", "ratio": 0.25, "per_task": 8},
    "ewc": {"name": "ewc", "lam": 100.0, "n_samples": 8, "estimator": "sampled"},
    "lwf": {"name": "lwf", "alpha": 0.5, "temperature": 2.0},
    "adapters": {"name": "adapters", "route": "classifier"},
}
"""The strategy matrix: one row (its parameters for a three-task run) per registered strategy."""


def test_every_registered_strategy_has_a_row_in_the_matrix():
    from instructkit.continual.strategies import STRATEGIES

    assert sorted(STRATEGY_ROWS) == sorted(STRATEGIES), "give the new strategy a row in STRATEGY_ROWS"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", list(STRATEGY_ROWS.values()), ids=list(STRATEGY_ROWS))
def test_each_strategy_runs_three_tasks_end_to_end(tmp_path, task_files, tiny_llama, strategy):
    res = _run(task_files, tiny_llama, tmp_path, strategy, n_tasks=3)
    run, m = res.run_dir, res.matrix
    # R: row i holds tasks 0..i+1 (seen so far and the next one), the untouched row every task
    assert [[v is not None for v in row] for row in m.rounds] == [
        [True, True, False],
        [True, True, True],
        [True, True, True],
    ]
    assert all(v is not None for v in m.untouched)
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    for k in range(3):
        lineage = json.loads((run / f"round-{k}" / "lineage.json").read_text())
        assert lineage["strategy"]["name"] == strategy["name"] and lineage["task"] == m.tasks[k]
    name = strategy["name"]
    if name == "replay":
        card = json.loads((run / "round-2" / "data" / "card.json").read_text())
        assert card["replayed"] == 5  # ceil(0.25 x 17 kept records)
        assert card["replayed_per_task"] == {"sentiment": 3, "ner": 2}  # balanced, remainder to the earliest
        assert card["train_records"] == card["kept"] + 5
        buffer = [json.loads(line) for line in (run / "round-2" / "buffer.jsonl").read_text().splitlines()]
        per_task = {t: sum(r["meta"]["replay"]["task"] == t for r in buffer) for t in m.tasks}
        assert per_task == {"sentiment": 8, "ner": 8, "code": 8}
        lineage = json.loads((run / "round-2" / "lineage.json").read_text())
        assert (
            lineage["buffer_sha256"]
            == hashlib.sha256((run / "round-2/buffer.jsonl").read_bytes()).hexdigest()
        )
    if name == "ewc":
        from instructkit.continual.strategies.ewc import EwcState

        states = [EwcState.load(run / f"round-{k}" / "ewc.safetensors") for k in range(3)]
        assert [s.tasks for s in states] == [1, 2, 3]
        assert all(float(f.sum()) > 0 for f in [sum(s.fisher[n].sum() for n in s.fisher) for s in states])
        # online EWC with gamma 1: the accumulated Fisher only grows
        n0 = next(iter(states[0].fisher))
        assert bool((states[1].fisher[n0] >= states[0].fisher[n0]).all())
    if name == "adapters":
        # every round folder holds every adapter so far; an earlier adapter is byte-identical in later rounds
        first = _hashes(run / "round-0" / "adapters" / "sentiment")
        assert _hashes(run / "round-1" / "adapters" / "sentiment") == first
        assert _hashes(run / "round-2" / "adapters" / "sentiment") == first
        assert _hashes(run / "round-2" / "adapters" / "ner") == _hashes(run / "round-1" / "adapters" / "ner")
        assert sorted(p.name for p in (run / "round-2" / "adapters").iterdir()) == [
            "code",
            "ner",
            "sentiment",
        ]
        routing = json.loads((run / "round-2" / "scores.json").read_text())["routing"]
        assert (
            routing["route"] == "classifier" and routing["accuracy"] == 1.0
        )  # three clearly different tasks
        # frozen base, one adapter per task: the score on a trained task never changes afterwards
        assert m.rounds[1][0] == m.rounds[0][0] and m.rounds[2][0] == m.rounds[0][0]


@pytest.mark.slow
def test_adapters_routed_by_name_score_each_task_with_its_own_adapter(tmp_path, task_files, tiny_llama):
    res = _run(task_files, tiny_llama, tmp_path, {"name": "adapters", "route": "name"})
    run, m = res.run_dir, res.matrix
    # the next task (no adapter yet) is answered by the base model: same replies as the untouched model
    base_preds = (run / "round-base" / "predictions" / "ner.jsonl").read_text()
    assert (run / "round-0" / "predictions" / "ner.jsonl").read_text() == base_preds
    assert m.rounds[0][1] == m.untouched[1]
    # after round 1 task 0 is answered by task 0's adapter: round 0's replies exactly
    r0 = (run / "round-0" / "predictions" / "sentiment.jsonl").read_text()
    assert (run / "round-1" / "predictions" / "sentiment.jsonl").read_text() == r0


@pytest.mark.slow
def test_a_round_killed_mid_training_resumes_to_the_uninterrupted_weights(tmp_path, task_files, tiny_llama):
    from safetensors.torch import load_file
    from transformers import Trainer, TrainerCallback

    strategy = {"name": "replay", "ratio": 0.25}
    whole = _run(task_files, tiny_llama, tmp_path / "whole", strategy)

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if "round-1" in args.output_dir and state.global_step == 2:
                raise KeyboardInterrupt("killed after round 1's step-2 checkpoint")

    init = Trainer.__init__

    def init_with_kill(self, *a, **k):
        k["callbacks"] = [*(k.get("callbacks") or []), Kill()]
        init(self, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "__init__", init_with_kill)
        with pytest.raises(KeyboardInterrupt):
            _run(task_files, tiny_llama, tmp_path / "killed", strategy)
    killed = tmp_path / "killed" / "replay"
    assert not (killed / "round-1" / "scores.json").exists()
    assert (killed / "round-1" / "train" / "checkpoints" / "checkpoint-2").is_dir()
    logs: list[str] = []
    resumed = run_continual(load_recipe(recipe_dict(task_files, tiny_llama, tmp_path / "killed", strategy)),
                            progress=False, log=logs.append)  # fmt: skip
    assert resumed.skipped == ["round-base", "round-0"] and resumed.ran == ["round-1"]
    assert any("resuming from" in line and "checkpoint-2" in line for line in logs)
    a = load_file(whole.run_dir / "round-1" / "train" / "model" / "adapter_model.safetensors")
    b = load_file(killed / "round-1" / "train" / "model" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[n] - b[n]).abs().max()) for n in a)
    assert worst <= 1e-6, f"resumed weights differ by up to {worst}"
    assert resumed.matrix.to_dict() == whole.matrix.to_dict()


# ----------------------------------------------------------------------------------------- adapters (unit)
def test_router_sends_clearly_different_prompts_to_their_task():
    from instructkit.continual.strategies.adapters import PromptRouter

    rng = random.Random(3)
    train = {
        "sentiment": [r.prompt_text() for r in _sentiment(rng, 20)],
        "ner": [r.prompt_text() for r in _ner(rng, 20)],
        "code": [r.prompt_text() for r in _code(rng, 20)],
    }
    rng = random.Random(4)
    test = {
        "sentiment": [r.prompt_text() for r in _sentiment(rng, 10)],
        "ner": [r.prompt_text() for r in _ner(rng, 10)],
        "code": [r.prompt_text() for r in _code(rng, 10)],
    }
    router = PromptRouter(2**12).fit(train)
    assert router.accuracy(test) == 1.0
    assert router.route(["Write a Python function g(a, b) returning the sum of a and b."]) == ["code"]
    # a router knows only the tasks it was fitted on; one task routes everything to it
    assert PromptRouter().fit({"ner": train["ner"]}).route(["anything"]) == ["ner"]


def test_route_by_name_and_carried_adapters_are_byte_identical(tmp_path):
    from instructkit.continual.strategies.adapters import adapter_dir, carry_adapters, route_by_name
    from instructkit.continual.strategies.base import ContinualError

    r0, r1 = tmp_path / "round-0", tmp_path / "round-1"
    for task, payload in (("a", b"A" * 100), ("b", b"B" * 50)):
        adapter_dir(r0, task).mkdir(parents=True)
        (adapter_dir(r0, task) / "adapter_model.safetensors").write_bytes(payload)
    carry_adapters(r0, r1, ["a", "b"])
    assert _hashes(adapter_dir(r1, "a")) == _hashes(adapter_dir(r0, "a"))
    adapters = {t: adapter_dir(r1, t) for t in ("a", "b")}
    assert route_by_name(adapters, "b") == adapter_dir(r1, "b") and route_by_name(adapters, "c") is None
    with pytest.raises(ContinualError, match="missing"):
        carry_adapters(r0, tmp_path / "round-2", ["a", "z"])


# ------------------------------------------------------------------------------------------- metric, CLI
def _fake_run(folder: Path, strategy: str, rows: list[list[float]]) -> Path:
    from instructkit.continual.report import summarize, write_report
    from instructkit.continual.runner import collect_matrix

    tasks = ["a", "b"]
    for label, row in [("round-base", rows[0]), ("round-0", rows[1]), ("round-1", rows[2])]:
        (folder / label).mkdir(parents=True)
        scores = {t: {"metric": "rouge", "score": v} for t, v in zip(tasks, row, strict=True)}
        (folder / label / "scores.json").write_text(json.dumps({"scores": scores, "general": None}))
    matrix = collect_matrix(folder, tasks, has_general=False)
    doc = {
        "matrix": matrix.to_dict(),
        "summary": summarize(matrix),
        "strategy": {"name": strategy, "params": {}},
    }
    (folder / "matrix.json").write_text(json.dumps(doc))
    write_report(folder)
    return folder


def test_report_flags_a_task_its_own_round_did_not_improve(tmp_path):
    # task a: 0 before and after its round (nothing learned); BWT is positive and nothing is forgotten,
    # which read like success before the report named the task
    flat = _fake_run(tmp_path / "flat", "naive", [[0, 20], [0, 30], [0.2, 70]])
    summary = json.loads((flat / "matrix.json").read_text())["summary"]
    assert summary["BWT"] > 0 and summary["not_learned"] == {"a": {"before": 0.0, "after": 0.0}}
    md = (flat / "report.md").read_text()
    assert "Warning: a did not improve in its own round (0.0 before, 0.0 after)" in md
    assert "b did not improve" not in md  # 30 -> 70 in its round
    assert "did not improve in its own round" in (flat / "report.html").read_text()
    learned = _fake_run(tmp_path / "learned", "naive", [[10, 20], [80, 30], [40, 70]])
    assert "did not improve" not in (learned / "report.md").read_text()


def test_compare_puts_runs_side_by_side_through_the_cli(tmp_path):
    from typer.testing import CliRunner

    from instructkit.cli import app

    naive = _fake_run(tmp_path / "naive", "naive", [[10, 20], [80, 30], [40, 70]])
    replay = _fake_run(tmp_path / "replay", "replay", [[10, 20], [80, 30], [75, 65]])
    assert "| BWT | -40.0 |" in (naive / "report.md").read_text()
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["continual", "compare", str(naive), str(replay), "--out", str(out)])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "cmp.md").read_text()
    assert "| naive | naive | 55.0 | -40.0 |" in md and "| replay | replay | 70.0 | -5.0 |" in md
    assert (tmp_path / "cmp.html").read_text().count("<svg") == 4  # a heatmap and curves per run
    res = CliRunner().invoke(app, ["continual", "compare", str(tmp_path)])
    assert res.exit_code == 1 and "matrix.json" in res.output


def test_cli_names_the_bad_key(tmp_path):
    from typer.testing import CliRunner

    from instructkit.cli import app

    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump({"name": "r", "tasks": [{"name": "a", "train": "x", "test": "y", "metric": "f1"}]})
    )
    res = CliRunner().invoke(app, ["continual", str(path)])
    assert res.exit_code == 1 and "'tasks[0].metric'" in res.output and "Traceback" not in res.output
    path.write_text(yaml.safe_dump({"name": "r", "tasks": [{"name": "a", "train": "x", "test": "y"}]}))
    res = CliRunner().invoke(app, ["continual", str(path), "--set", "strategy.name=nope"])
    assert res.exit_code == 1 and "'strategy.name'" in res.output


@pytest.mark.slow
def test_a_round_sigkilled_in_a_subprocess_resumes_to_the_uninterrupted_weights(
    tmp_path, task_files, tiny_llama
):
    """The command itself, killed with SIGKILL (no cleanup of any kind) once round 1 has a checkpoint, then
    rerun: rounds before it are skipped and round 1 ends with the uninterrupted run's weights."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    strategy = {"name": "naive"}

    def recipe(out: Path) -> dict:
        d = recipe_dict(task_files, tiny_llama, out, strategy)
        d["train"]["optim"]["max_steps"] = 24  # long enough to be killed mid-round
        return d

    whole = run_continual(load_recipe(recipe(tmp_path / "whole")), progress=False, log=lambda m: None)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(recipe(tmp_path / "killed")))
    src = Path(__file__).parent.parent / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "instructkit.cli", "continual", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = tmp_path / "killed" / "naive" / "round-1" / "train" / "checkpoints"
    deadline = time.monotonic() + 600
    try:
        while not any(ckpts.glob("checkpoint-*/instructkit-manifest.json")):
            assert proc.poll() is None, "the run ended before round 1 saved a checkpoint"
            assert time.monotonic() < deadline, "no round-1 checkpoint within 10 minutes"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed = tmp_path / "killed" / "naive"
    assert not (killed / "round-1" / "trained.json").exists(), "round 1 finished before the kill"
    logs: list[str] = []
    resumed = run_continual(read_recipe(path), recipe_path=path, progress=False, log=logs.append)
    assert resumed.skipped == ["round-base", "round-0"] and resumed.ran == ["round-1"]
    assert any("resuming from" in line for line in logs)
    a = load_file(whole.run_dir / "round-1" / "train" / "model" / "adapter_model.safetensors")
    b = load_file(killed / "round-1" / "train" / "model" / "adapter_model.safetensors")
    worst = max(float((a[n] - b[n]).abs().max()) for n in a)
    assert worst <= 1e-6, f"resumed weights differ by up to {worst}"
