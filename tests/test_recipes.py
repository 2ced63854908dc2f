"""Every shipped recipe parses into its config and builds, heavy parts swapped for tiny ones
(STYLE 5: found recursively, so a recipe in a subfolder is never skipped)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from instructkit.data.curate_config import CurateConfig
from instructkit.formats import resolve_path
from instructkit.train.methods import build_method

from .conftest import tiny_bert_config, tiny_llama_config

ROOT = Path(__file__).parent.parent
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))


def tiny_model(base: str, task: str):
    """The recipe's model at toy width (the conftest configs), with the head its task declares."""
    import transformers

    from instructkit.train.tasks import TASKS

    if "minilm" in base:
        cfg = tiny_bert_config(vocab_size=128, num_labels=5)
    else:
        cfg = tiny_llama_config(vocab_size=128, num_labels=5, pad_token_id=0)
    torch.manual_seed(0)
    return getattr(transformers, TASKS[task].auto_model).from_config(cfg)


KINDS = ("run", "apps", "train", "curate", "generate", "continual", "mixtures", "templates")


def kind_of(path: Path) -> str:
    """A recipe's schema is the folder it sits in (recipes/KIND/...), never guessed from its shape."""
    return path.relative_to(ROOT / "recipes").parts[0]


def test_recipes_exist() -> None:
    assert len(RECIPES) >= 8
    assert {kind_of(p) for p in RECIPES} == set(KINDS), (
        "every recipe sits in recipes/run, apps, train, curate, generate, continual, mixtures or templates"
    )
    assert any(p.parent.name == "ner-methods" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_recipe_builds(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # recipes name their files relative to the repository root
    kind = kind_of(path)
    assert kind in KINDS, f"{path}: recipes/ holds only the folders {', '.join(KINDS)}"
    if kind in ("run", "apps"):  # `instructkit run`: data -> eval -> train -> eval -> report
        from instructkit.recipe import Recipe, check_recipe
        from instructkit.recipe.plan import load_curate, train_config

        recipe = Recipe.from_yaml(path)
        assert recipe.name == path.stem, "a recipe's run name is its file name"
        for p in recipe.inputs:
            assert (ROOT / p).exists(), p
        check_recipe(recipe, path)  # every file the template stage reads, the held-out split, the metrics
        steps = load_curate(recipe, path.parent).build_steps()
        assert steps and all(type(s).build(s.params()).params() == s.params() for s in steps)  # round trip
        cfg = train_config(recipe, path.parent, Path("data"), ".jsonl")
        assert cfg.data.train == "data/train.jsonl" and cfg.name == "train"
        if recipe.generate is not None:
            from instructkit.recipe.plan import generate_config

            name, gcfg = generate_config(recipe, path.parent)
            assert name == recipe.generate["generator"] and gcfg.backend["name"] == "local"
        return
    if kind == "generate":  # `instructkit generate NAME --config FILE`: the file is named after its generator
        from instructkit.generate.runner import load_generate_config

        raw = yaml.safe_load(path.read_text())
        cfg = load_generate_config(path.stem, raw)
        assert all(getattr(cfg, k) is not None or v is None for k, v in raw.items())
        return
    if kind == "continual":  # `instructkit continual`: every round's config, task data and strategy
        from instructkit.continual.plan import check_continual, round_train_config
        from instructkit.continual.recipe import read_recipe

        recipe = read_recipe(path)
        assert recipe.name == path.stem, "a recipe's run name is its file name"
        plan = check_continual(recipe, path)  # reads every task's files; errors name the key
        assert all(t.kept and t.test for t in plan.tasks)
        cfg = round_train_config(recipe, Path("round-0"), Path("train.jsonl"))
        params = {k: v for k, v in cfg.method.items() if k != "name"}
        model = build_method(cfg.method["name"], params).apply(tiny_model(cfg.model, cfg.task), cfg.task)
        assert any(p.requires_grad for p in model.parameters())
        return
    if kind == "mixtures":  # `instructkit data mixture CONFIG -o OUT`: every source read, counts balanced
        from instructkit.tasks.mixture import build_mixture, load_mixture

        cfg = load_mixture(path)
        mixed = build_mixture(cfg, base=path.parent)
        card = mixed.card()
        assert card["records"] == len(mixed.records) == (cfg.total or sum(c.limit for c in mixed.counts))
        assert all(c.read == c.available + c.rejected and c.taken <= c.limit for c in mixed.counts)
        return
    if kind == "templates":  # `--templates FILE`: every template renders its task's schema example
        from instructkit.tasks.records import TASK_SCHEMAS
        from instructkit.tasks.templates import load_templates, render

        templates = load_templates(path)
        assert templates
        for tpl in templates:
            rec = render(tpl, TASK_SCHEMAS[tpl.task].example, None, {})
            assert rec.messages[0].content and rec.messages[1].content
        return
    if kind == "curate":
        steps = CurateConfig.from_yaml(path).build_steps()
        raw_steps = yaml.safe_load(path.read_text())["steps"]
        assert [s.name for s in steps] == [r if isinstance(r, str) else r["step"] for r in raw_steps]
        assert steps and CurateConfig([{"step": s.name, **s.params()} for s in steps]).build_steps() == steps
        return
    from instructkit.train.config import TrainConfig

    raw = yaml.safe_load(path.read_text())
    cfg = TrainConfig.from_yaml(path)
    assert cfg.name == raw["name"] == path.stem, "a recipe's run name is its file name"
    for split in (cfg.data.train, cfg.data.val, cfg.data.test):
        if split:
            assert (ROOT / resolve_path(split)).exists() or resolve_path(split).exists(), split
    method = build_method(cfg.method["name"], {k: v for k, v in cfg.method.items() if k != "name"})
    model = method.apply(tiny_model(cfg.model, cfg.task), cfg.task)
    summary = method.trainable_summary(model)
    assert 0 < summary["trainable"] <= summary["total"]
