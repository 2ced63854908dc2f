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

from instructkit.continual_run.recipe import ContinualRecipeError, load_recipe, read_recipe
from instructkit.continual_run.runner import run_continual
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
        text = f"Review {i}: the {thing} made my week." if label == "positive" else f"Review {i}: the {thing} ruined it."
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


def recipe_dict(files: dict[str, Path], model: str, out: Path, strategy: dict, n_tasks: int = 2, **kw) -> dict:
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
        ({"tasks": [{"name": "a", "train": "x.jsonl", "test": "y.jsonl", "metric": "bleu"}]}, "'tasks[0].metric'"),
        ({"tasks": [{"name": "a", "train": "x.jsonl", "metric": "rouge"}]}, "'tasks[0].test'"),
        ({"tasks": [{"name": "a", "train": "x.jsonl", "test": "y", "tset_share": 0.1}]}, "'tasks[0].tset_share'"),
        ({"strategy": {"name": "replay"}}, "'strategy.ratio'"),
        ({"strategy": {"name": "replya", "ratio": 0.1}}, "'strategy.name'"),
        ({"strategy": {"name": "ewc", "lam": -1}}, "'strategy.lam'"),
        ({"train": {"model": "x"}}, "'train.model'"),
        ({"task": "token-classification"}, "'task'"),
        ({"seed": "abc"}, "'seed'"),
        ({"tasks": [{"name": "a", "train": "x", "test": "y", "metric": "rouge", "labels": ["p", "n"]}]},
         "'tasks[0].labels'"),
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
    # --set overrides go through the same checks
    with pytest.raises(ContinualRecipeError, match=r"'strategy.ratio'"):
        read_recipe(path, {"strategy": {"name": "replay", "ratio": "lots"}})


# -------------------------------------------------------------------------------------------- end to end
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
    assert lineage["data_card_sha256"] == hashlib.sha256((run / "round-1/data/card.json").read_bytes()).hexdigest()
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
