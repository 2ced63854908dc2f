"""The run recipe's template stage: labeled rows -> instruction records -> curate -> eval on the held-out
split (the dataset's own test rows, rendered with one template, never curated) -> train -> eval after."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.config import ConfigError, load
from instructkit.recipe import Recipe, RecipeError, run_recipe
from instructkit.tasks.mixture import MixtureConfig, build_held_out, build_mixture


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cls_rows(n: int, start: int) -> list[dict]:
    return [
        {
            "text": f"Item {start + i}: the {'goal' if i % 2 else 'chip'} story.",
            "label": "sports" if i % 2 else "tech",
        }
        for i in range(n)
    ]


@pytest.fixture
def labeled(tmp_path: Path) -> Path:
    write_rows(tmp_path / "train.jsonl", cls_rows(30, 0))
    # a label only the test split has still becomes an option of every prompt, train and test alike
    write_rows(tmp_path / "test.jsonl", [*cls_rows(4, 100), {"text": "Item 999: rain.", "label": "weather"}])
    write_rows(
        tmp_path / "rel-train.jsonl",
        [
            {"text": f"The <e1>lid {i}</e1> of the <e2>jar</e2> broke.", "relation": "Component-Whole(e1,e2)"}
            for i in range(8)
        ],
    )
    write_rows(
        tmp_path / "rel-test.jsonl",
        [
            {"text": "The <e1>wheel</e1> of the <e2>car</e2> spun.", "relation": "Component-Whole(e1,e2)"},
            {"text": "no markers here", "relation": "Other"},  # a reject naming the field
        ],
    )
    return tmp_path


def mixture(folder: Path, **extra) -> MixtureConfig:
    sources = [
        {"data": [str(folder / "train.jsonl")], "task": "classification", "test": [str(folder / "test.jsonl")],
         "test_template": "classification/options-after"},
        {"data": [str(folder / "rel-train.jsonl")], "task": "relation", "test": [str(folder / "rel-test.jsonl")]},
    ]  # fmt: skip
    return load(MixtureConfig, {"sources": sources, "seed": 0, **extra})


def test_held_out_rows_are_all_rendered_with_one_template_and_the_training_option_set(labeled: Path) -> None:
    cfg = mixture(labeled, cap=5)
    held = build_held_out(cfg)
    mixed = build_mixture(cfg)
    assert len(mixed.records) == 10  # the cap applies to training records only
    assert [c["records"] for c in held.counts] == [5, 1] and [c["rejected"] for c in held.counts] == [0, 1]
    assert [c["read"] for c in held.counts] == [5, 2]
    assert held.counts[0]["template"] == "classification/options-after"
    assert held.counts[1]["template"] == "relation/marked-question"  # the task's first for ['all']
    assert {r.meta["template"] for r in held.records if r.meta["task"] == "classification"} == {
        "classification/options-after"
    }
    assert held.rejects[0]["mixture_source"] == "rel-train/relation"
    assert "text" in json.dumps(held.rejects[0])  # the reject names the field
    # every prompt, training and held-out, offers the label only the test split has
    cls_train = [r for r in mixed.records if r.meta["task"] == "classification"]
    assert all(
        "weather" in r.messages[0].content
        for r in cls_train
        if r.meta["template"] != "classification/no-options"
    )
    assert all(r.meta["options"] == ["sports", "tech", "weather"] for r in cls_train)


def test_test_files_are_refused_on_sni_sources_and_a_test_template_needs_test_files() -> None:
    with pytest.raises(ConfigError, match=r"sources\[0\]\.test_template.*only with test"):
        load(MixtureConfig, {"sources": [{"data": ["a.jsonl"], "task": "qa", "test_template": "qa/extract"}]})
    with pytest.raises(ConfigError, match=r"sources\[0\]\.test.*data sources only"):
        load(MixtureConfig, {"sources": [{"sni": "t.json", "test": ["b.json"]}]})


def test_data_mixture_writes_the_held_out_file(labeled: Path, tmp_path: Path) -> None:
    cfg = {"sources": [{"data": ["train.jsonl"], "task": "classification", "test": ["test.jsonl"]}]}
    (labeled / "mix.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out" / "mix.jsonl"
    out.parent.mkdir()
    res = CliRunner().invoke(app, ["data", "mixture", str(labeled / "mix.yaml"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    test = [json.loads(x) for x in (out.parent / "mix.test.jsonl").read_text().splitlines()]
    assert len(test) == 5 and {r["meta"]["template"] for r in test} == {"classification/options-first"}
    card = json.loads((out.parent / "mix.card.json").read_text())
    assert card["held_out"]["records"] == 5 and card["records"] == 30
    # --test without any test source is an error naming the option
    (labeled / "plain.yaml").write_text(
        yaml.safe_dump({"sources": [{"data": ["train.jsonl"], "task": "classification"}]})
    )
    res = CliRunner().invoke(
        app,
        [
            "data",
            "mixture",
            str(labeled / "plain.yaml"),
            "-o",
            str(tmp_path / "p.jsonl"),
            "--test",
            str(tmp_path / "t.jsonl"),
        ],
    )
    assert res.exit_code != 0 and "--test" in res.output and "names test files" in res.output


def recipe_dict(model: str, **extra) -> dict:
    return {
        "name": "apps",
        "output_dir": "runs",
        "template": {
            "seed": 0,
            "sources": [
                {"data": ["train.jsonl"], "task": "classification", "test": ["test.jsonl"]},
                {"data": ["rel-train.jsonl"], "task": "relation", "test": ["rel-test.jsonl"]},
            ],
        },
        "curate": {"steps": ["normalize", "empty", {"step": "exact_dedup", "key": "prompt"}], "split": {"val": 0.1, "test": 0.0}},
        "train": {
            "model": model,
            "task": "causal-lm",
            "method": {"name": "lora", "r": 4, "alpha": 8},
            "data": {"max_length": 128},
            "optim": {"lr": 5e-3, "batch_size": 4, "max_steps": 1},
            "bf16": "false",
        },
        "eval": {"split": "held-out", "max_new_tokens": 4, "batch_size": 8},
        **extra,
    }  # fmt: skip


def test_a_recipe_with_a_template_stage_scores_the_held_out_split_per_task(
    labeled: Path, tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(labeled)
    (labeled / "recipe.yaml").write_text(yaml.safe_dump(recipe_dict(tiny_llama)))
    lines: list[str] = []
    first = run_recipe(
        Recipe.from_yaml("recipe.yaml"), recipe_path="recipe.yaml", progress=False, log=lines.append
    )
    assert first.ran == ["template", "data", "before", "train", "after", "report"]
    assert "[template] 38 training records, 6 held-out, 1 rejected rows" in lines
    run = labeled / "runs" / "apps"
    assert len((run / "template" / "test.jsonl").read_text().splitlines()) == 6
    card = json.loads((run / "template" / "card.json").read_text())
    assert card["held_out"]["sources"][1]["rejected"] == 1
    # the curated splits hold training records only; both evaluations scored the 6 held-out records
    data_card = json.loads((run / "data" / "card.json").read_text())
    assert data_card["accounting"]["in"] == 38 and data_card["splits"]["test"] == 0
    for name in ("before", "after"):
        body = json.loads((run / "eval" / f"{name}.json").read_text())
        assert body["metrics"]["tasks"]["classification"]["records"] == 5
        assert body["metrics"]["tasks"]["relation"]["records"] == 1
        assert "relation.macro_f1" in body["metrics"] or any(
            k.startswith("relation.") for k in body["metrics"]
        )
    # a rerun skips every stage; a changed held-out file reruns the template stage and what follows
    saved = (run / "recipe.yaml").stat().st_mtime_ns
    again: list[str] = []
    second = run_recipe(
        Recipe.from_yaml("recipe.yaml"), recipe_path="recipe.yaml", progress=False, log=again.append
    )
    assert second.ran == []
    assert (run / "recipe.yaml").stat().st_mtime_ns == saved  # unchanged recipe: the file is left as it was
    # a run folder written before eval.task_max_new_tokens existed: the same recipe, left as it was
    old = yaml.safe_load((run / "recipe.yaml").read_text())
    assert old["eval"].pop("task_max_new_tokens") == {}
    (run / "recipe.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    saved = (run / "recipe.yaml").stat().st_mtime_ns
    assert (
        run_recipe(
            Recipe.from_yaml("recipe.yaml"), recipe_path="recipe.yaml", progress=False, log=again.append
        ).ran
        == []
    )
    assert (run / "recipe.yaml").stat().st_mtime_ns == saved
    write_rows(labeled / "test.jsonl", cls_rows(3, 200))
    third = run_recipe(
        Recipe.from_yaml("recipe.yaml"), recipe_path="recipe.yaml", progress=False, log=again.append
    )
    assert third.ran[0] == "template" and "before" in third.ran


def test_held_out_needs_a_template_stage_with_test_files(
    labeled: Path, tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from instructkit.recipe import check_recipe

    monkeypatch.chdir(labeled)
    no_template = recipe_dict(tiny_llama, inputs=["train.jsonl"])
    del no_template["template"]
    with pytest.raises(RecipeError, match=r"eval\.split.*neither held_out nor a template stage"):
        check_recipe(load(Recipe, no_template))
    no_test = recipe_dict(tiny_llama)
    for src in no_test["template"]["sources"]:
        del src["test"]
    with pytest.raises(RecipeError, match=r"eval\.split.*no template source names test files"):
        check_recipe(load(Recipe, no_test))
    missing = recipe_dict(tiny_llama)
    missing["template"]["sources"][0]["test"] = ["nope.jsonl"]
    with pytest.raises(RecipeError, match=r"template.*no such file.*nope\.jsonl"):
        check_recipe(load(Recipe, missing))
    bad = recipe_dict(tiny_llama)
    bad["template"]["sources"][0]["task"] = "sentiment"
    with pytest.raises(ConfigError, match=r"template\.sources\[0\]\.task.*unknown task"):
        check_recipe(load(Recipe, bad))


def test_a_held_out_file_is_scored_as_it_is(
    labeled: Path, tiny_bert: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encoder head on labeled rows: the dataset's own test file is the held-out split, never curated."""
    monkeypatch.chdir(labeled)
    recipe = {
        "name": "enc",
        "inputs": ["train.jsonl"],
        "held_out": "test.jsonl",
        "curate": {"steps": ["normalize"], "split": {"val": 0.2, "test": 0.0}},
        "train": {
            "model": tiny_bert,
            "task": "sequence-classification",
            "method": {"name": "full"},
            "data": {"max_length": 32},
            "optim": {"lr": 1e-3, "batch_size": 8, "max_steps": 1},
            "bf16": "false",
        },
        "eval": {"split": "held-out", "batch_size": 8},
    }
    (labeled / "enc.yaml").write_text(yaml.safe_dump(recipe))
    write_rows(labeled / "test.jsonl", cls_rows(4, 100))  # labels the training data has
    result = run_recipe(
        Recipe.from_yaml("enc.yaml"), recipe_path="enc.yaml", progress=False, log=lambda m: None
    )
    assert result.ran[-1] == "report"
    for name in ("before", "after"):
        body = json.loads((labeled / "runs" / "enc" / "eval" / f"{name}.json").read_text())
        assert body["samples"] == 4 and body["data"] == "test.jsonl"
    recipe["eval"]["split"] = "test"
    with pytest.raises(RecipeError, match=r"'held_out' is scored only with eval\.split: held-out"):
        from instructkit.recipe import check_recipe

        check_recipe(load(Recipe, recipe))


def test_eval_task_reply_budgets_are_checked_and_hashed_only_when_set(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    for value, problem in [("{cod: 5}", "'eval.task_max_new_tokens.cod': unknown task"),
                           ("{code: 0}", "'eval.task_max_new_tokens.code' must be an integer of at least 1")]:  # fmt: skip
        path.write_text(f"name: r\ninputs: [x.jsonl]\ntrain: t.yaml\neval:\n  task_max_new_tokens: {value}\n")
        with pytest.raises(RecipeError, match=re.escape(problem)):
            Recipe.from_yaml(path)
    path.write_text("name: r\ninputs: [x.jsonl]\ntrain: t.yaml\neval:\n  task_max_new_tokens: {code: 160}\n")
    assert Recipe.from_yaml(path).eval.digest_view()["task_max_new_tokens"] == {"code": 160}
    path.write_text("name: r\ninputs: [x.jsonl]\ntrain: t.yaml\n")
    assert "task_max_new_tokens" not in Recipe.from_yaml(path).eval.digest_view()
