"""The one config loader: every bad config is refused at load with the file and the dotted key named, by the
library and by `instructkit train`, `instructkit data curate` and `instructkit run` (the last before any
stage starts: no output folder). Also what it must accept: numbers given as strings, null where allowed."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.config import ConfigError, describe, field_docs, load, parse_overrides
from instructkit.data.base import STEPS, StepConfigError
from instructkit.data.curate_config import CurateConfig
from instructkit.data.split import SplitConfig
from instructkit.models import ModelNotFoundError
from instructkit.recipe import EvalSettings, Recipe, RecipeError, check_recipe
from instructkit.train.config import DataConfig, EvalConfig, OptimConfig, TrainConfig
from instructkit.train.methods import METHODS, MethodError, build_method

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "examples" / "data" / "demo.jsonl"
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}
runner = CliRunner()

# ------------------------------------------------------------------------------------- train configs
GOOD_TRAIN: dict[str, Any] = {"model": "tiny", "data": {"train": str(DEMO)}, "method": {"name": "lora"}}

# (name, change to GOOD_TRAIN as {dotted: value}, the key the error must name)
BAD_TRAIN = [
    ("wrong type", {"optim.batch_size": "eight"}, "optim.batch_size"),
    ("bool for a number", {"optim.lr": True}, "optim.lr"),
    ("number for a string or list", {"method.target_modules": 7}, "method.target_modules"),
    ("negative lr", {"optim.lr": -0.001}, "optim.lr"),
    ("nan lr", {"optim.lr": float("nan")}, "optim.lr"),
    ("zero batch", {"optim.batch_size": 0}, "optim.batch_size"),
    ("negative batch", {"optim.batch_size": -4}, "optim.batch_size"),
    ("zero grad_accum", {"optim.grad_accum": 0}, "optim.grad_accum"),
    ("zero max_length", {"data.max_length": 0}, "data.max_length"),
    ("negative save_total_limit", {"save_total_limit": -1}, "save_total_limit"),
    ("nothing to train", {"optim.epochs": 0, "optim.max_steps": -1}, "optim.epochs"),
    ("choice", {"optim.schedule": "cosin"}, "optim.schedule"),
    ("unknown top-level key", {"epochs": 3}, "epochs"),
    ("unknown nested key", {"optim.learning_rate": 1e-4}, "optim.learning_rate"),
    ("unknown method parameter", {"method.rank": 8}, "method.rank"),
    ("method parameter range", {"method.r": 0}, "method.r"),
    ("method parameter type", {"method.dropout": "high"}, "method.dropout"),
    ("unknown method", {"method.name": "qlora"}, "method.name"),
    ("method for the wrong task", {"method": {"name": "prompt-tuning"}, "task": "token-classification"}, "method.name"),
    ("name not a string", {"name": 5}, "name"),
    ("section not a mapping", {"optim": 3}, "optim"),
]  # fmt: skip


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    from instructkit.config import set_dotted

    data = yaml.safe_load(yaml.safe_dump(base))
    for k, v in changes.items():
        set_dotted(data, k, v, parse=False)
    return data


@pytest.mark.parametrize(("case", "changes", "key"), BAD_TRAIN, ids=[c[0] for c in BAD_TRAIN])
def test_bad_train_config_names_the_key(case: str, changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(with_changes(GOOD_TRAIN, changes))
    assert err.value.key == key and f"'{key}'" in str(err.value), str(err.value)


def test_unknown_method_parameter_lists_the_known_ones() -> None:
    with pytest.raises(
        MethodError, match=r"unknown parameter 'method\.rank' \(known: alpha, dropout, name, r, "
    ):
        TrainConfig.from_dict(with_changes(GOOD_TRAIN, {"method.rank": 8}))
    with pytest.raises(MethodError, match="'rank'"):  # on its own, the parameter has no prefix
        build_method("lora", {"rank": 8})


def test_numbers_as_strings_and_nulls_are_accepted(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict(
        with_changes(
            GOOD_TRAIN,
            {"optim.lr": "5e-4", "optim.batch_size": "4", "method.r": "16", "save_total_limit": None},
        )
    )
    assert cfg.optim.lr == 5e-4 and cfg.optim.batch_size == 4 and cfg.method["r"] == 16
    assert cfg.save_total_limit is None
    assert CurateConfig.from_dict({"num_proc": "2"}).num_proc == 2
    assert TrainConfig.from_dict(with_changes(GOOD_TRAIN, {"optim.epochs": 0, "optim.max_steps": 5}))


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("data:\n  train: x\noptim: {lr: 1e-4\n")
    with pytest.raises(ConfigError, match=r"t\.yaml:4:1: YAML syntax error"):
        TrainConfig.from_yaml(bad)
    bad.write_text("steps: [normalize\n")
    with pytest.raises(StepConfigError, match=r"t\.yaml:2:1: YAML syntax error"):
        CurateConfig.from_yaml(bad)
    bad.write_text("name: !!python/object/apply:os.system [echo hi]\n")
    with pytest.raises(RecipeError, match=r"t\.yaml:1:7: YAML syntax error"):
        Recipe.from_yaml(bad)


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ("optim.lr=[1", r"--set: 'optim\.lr': the value '\[1' is not valid YAML"),
        ("optim.lr=!!python/object/apply:os.system [echo]", r"'optim\.lr'.*!!python/\.\.\. are not allowed"),
        ("optim.lr", r"is not KEY=VALUE"),
    ],
)
def test_set_values_are_named_errors(item: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_overrides([item])


def test_set_value_with_bad_yaml_from_yaml_overrides(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(GOOD_TRAIN))
    with pytest.raises(ConfigError, match=r"t\.yaml: 'optim\.lr': the value '\[1' is not valid YAML"):
        TrainConfig.from_yaml(path, {"optim.lr": "[1"})


# ------------------------------------------------------------------------------------ curate configs
BAD_CURATE = [
    ("wrong type", {"num_proc": "two"}, "num_proc"),
    ("zero count", {"num_proc": 0}, "num_proc"),
    ("choice", {"on_error": "ignore"}, "on_error"),
    ("unknown top-level key", {"splitt": {}}, "splitt"),
    ("unknown nested key", {"split": {"shuffle": True}}, "split.shuffle"),
    ("split shares", {"split": {"val": 0.6, "test": 0.5}}, "split.val"),
    ("steps not a list", {"steps": "normalize"}, "steps"),
    ("unknown step parameter", {"steps": ["normalize", {"step": "near_dedup", "treshold": 0.5}]}, "steps[1].treshold"),
    ("step parameter range", {"steps": [{"step": "near_dedup", "threshold": 0}]}, "steps[0].threshold"),
    ("step parameter type", {"steps": [{"step": "length", "max": "long"}]}, "steps[0].max"),
    ("string for a list in a step", {"steps": [{"step": "language", "languages": "en"}]}, "steps[0].languages"),
    ("step parameter choice", {"steps": [{"step": "pii", "action": "hide"}]}, "steps[0].action"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "data", "key"), BAD_CURATE, ids=[c[0] for c in BAD_CURATE])
def test_bad_curate_config_names_the_key(case: str, data: dict[str, Any], key: str) -> None:
    with pytest.raises(StepConfigError) as err:
        CurateConfig.from_dict(data)
    assert err.value.key == key and f"'{key}'" in str(err.value), str(err.value)


# --------------------------------------------------------------------------------------- run recipes
def good_recipe(tmp_path: Path) -> dict[str, Any]:
    return {
        "name": "r",
        "output_dir": str(tmp_path / "runs"),
        "inputs": [str(DEMO)],
        "train": dict(GOOD_TRAIN),
        "eval": {"metrics": ["rouge"]},
    }


BAD_RECIPE = [
    ("inputs a string", {"inputs": str(DEMO)}, "inputs"),
    ("eval a number", {"eval": 5}, "eval"),
    ("name an int", {"name": 7}, "name"),
    ("train_overrides a list", {"train_overrides": ["optim.lr=1"]}, "train_overrides"),
    ("eval batch_size a word", {"eval": {"batch_size": "sixteen"}}, "eval.batch_size"),
    ("eval max_new_tokens negative", {"eval": {"max_new_tokens": -5}}, "eval.max_new_tokens"),
    ("eval metrics a string", {"eval": {"metrics": "rouge"}}, "eval.metrics"),
    ("unknown eval key", {"eval": {"splitt": "test"}}, "eval.splitt"),
    ("unknown top-level key", {"trian": {}}, "trian"),
]  # fmt: skip

# found only when the configs a recipe points to are checked (check_recipe)
BAD_RECIPE_TARGETS = [
    ("train override out of range", {"train_overrides": {"optim.lr": -1}}, "train_overrides.optim.lr"),
    ("train override unknown key", {"train_overrides": {"optim.lrr": 1}}, "train_overrides.optim.lrr"),
    ("inline train unknown key", {"train": {**GOOD_TRAIN, "optim": {"lrr": 1}}}, "train.optim.lrr"),
    ("inline train method parameter", {"train": {**GOOD_TRAIN, "method": {"name": "lora", "rank": 8}}}, "train.method.rank"),
    ("inline curate unknown key", {"curate": {"split": {"shuffle": True}}}, "curate.split.shuffle"),
    ("inline curate step parameter", {"curate": {"steps": [{"step": "length", "min": -1}]}}, "curate.steps[0].min"),
    ("missing input", {"inputs": ["no-such.jsonl"]}, "inputs[0]"),
    ("unknown metric", {"eval": {"metrics": ["rouge", "blue"]}}, "eval.metrics[1]"),
    ("missing train file", {"train": "no-such.yaml"}, "train"),
]  # fmt: skip


def write(tmp_path: Path, data: dict[str, Any], name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("case", "changes", "key"), BAD_RECIPE, ids=[c[0] for c in BAD_RECIPE])
def test_bad_recipe_names_the_key(tmp_path: Path, case: str, changes: dict[str, Any], key: str) -> None:
    path = write(tmp_path, {**good_recipe(tmp_path), **changes})
    with pytest.raises(RecipeError) as err:
        Recipe.from_yaml(path)
    assert err.value.key == key and f"'{key}'" in str(err.value) and "recipe.yaml" in str(err.value)


@pytest.mark.parametrize(
    ("case", "changes", "key"), BAD_RECIPE_TARGETS, ids=[c[0] for c in BAD_RECIPE_TARGETS]
)
def test_recipe_targets_are_checked_before_any_stage(
    tmp_path: Path, case: str, changes: dict[str, Any], key: str
) -> None:
    path = write(tmp_path, {**good_recipe(tmp_path), **changes})
    with pytest.raises(ConfigError) as err:
        check_recipe(Recipe.from_yaml(path), path)
    assert err.value.key == key and f"'{key}'" in str(err.value) and "recipe.yaml" in str(err.value)


def test_recipe_train_file_errors_name_both_files(tmp_path: Path) -> None:
    train = write(tmp_path, with_changes(GOOD_TRAIN, {"optim.batch_size": 0}), "t.yaml")
    path = write(tmp_path, {**good_recipe(tmp_path), "train": str(train)})
    with pytest.raises(
        ConfigError, match=r"recipe\.yaml: train: .*t\.yaml: 'optim\.batch_size' must be at least 1"
    ):
        check_recipe(Recipe.from_yaml(path), path)


# ------------------------------------------------------------------------------------ offline hub id
@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> str:
    """HF_ENDPOINT at a closed local port: the hub "cannot be reached", with no network touched."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return "nobody-xyz/no-such-model-xyz"


def test_offline_hub_id_fails_at_once(offline_hub: str) -> None:
    from instructkit.models.registry import check_model, load_tokenizer

    with pytest.raises(ModelNotFoundError, match="cannot be reached"):
        check_model(offline_hub)
    with pytest.raises(ModelNotFoundError, match=r"no-such-model-xyz.*hub"):
        load_tokenizer(offline_hub)


# ----------------------------------------------------------------------------------------- the CLI
def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), env=ENV)


def assert_refused(result: Any, key: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.output
    assert key in result.output, result.output


@pytest.mark.parametrize(("case", "changes", "key"), BAD_TRAIN, ids=[c[0] for c in BAD_TRAIN])
def test_cli_train_refuses(tmp_path: Path, case: str, changes: dict[str, Any], key: str) -> None:
    path = write(tmp_path, with_changes(GOOD_TRAIN, changes), "t.yaml")
    result = cli("train", str(path), "--output-dir", str(tmp_path / "runs"))
    assert_refused(result, key)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--set", "optim.lr=[1"], "optim.lr"),
        (["--set", "optim.lr=!!python/object/apply:os.system [echo]"], "optim.lr"),
        (["--set", "optim.lr=-0.001"], "optim.lr"),
        (["--set", "optim.lr=.nan"], "optim.lr"),
        (["--set", "method.rank=8"], "method.rank"),
    ],
)
def test_cli_train_refuses_bad_set(tmp_path: Path, args: list[str], key: str) -> None:
    path = write(tmp_path, GOOD_TRAIN, "t.yaml")
    assert_refused(cli("train", str(path), *args, "--output-dir", str(tmp_path / "runs")), key)


def test_cli_train_refuses_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("data: {train: x}\noptim:\n  lr: [1\n")
    assert_refused(cli("train", str(path)), "t.yaml:4:1")


def test_cli_train_refuses_offline_hub_id(tmp_path: Path, offline_hub: str) -> None:
    path = write(tmp_path, {**GOOD_TRAIN, "model": offline_hub}, "t.yaml")
    result = cli("train", str(path), "--output-dir", str(tmp_path / "runs"))
    assert_refused(result, "cannot be reached")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("case", "data", "key"), BAD_CURATE, ids=[c[0] for c in BAD_CURATE])
def test_cli_curate_refuses(tmp_path: Path, case: str, data: dict[str, Any], key: str) -> None:
    path = write(tmp_path, data, "c.yaml")
    result = cli("data", "curate", str(DEMO), "-o", str(tmp_path / "out"), "--config", str(path))
    assert_refused(result, key)
    assert not (tmp_path / "out").exists()


def test_cli_curate_refuses_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("split: {val: 0.1\n")
    assert_refused(
        cli("data", "curate", str(DEMO), "-o", str(tmp_path / "out"), "-c", str(path)), "c.yaml:2:1"
    )


@pytest.mark.parametrize(
    ("case", "changes", "key"),
    BAD_RECIPE + BAD_RECIPE_TARGETS,
    ids=[c[0] for c in BAD_RECIPE + BAD_RECIPE_TARGETS],
)
def test_cli_run_refuses_before_any_stage(
    tmp_path: Path, case: str, changes: dict[str, Any], key: str
) -> None:
    path = write(tmp_path, {**good_recipe(tmp_path), **changes})
    assert_refused(cli("run", str(path)), key)
    assert not (tmp_path / "runs").exists(), "a stage started before the recipe was checked"


def test_cli_run_refuses_offline_hub_id_before_any_stage(tmp_path: Path, offline_hub: str) -> None:
    path = write(tmp_path, {**good_recipe(tmp_path), "train": {**GOOD_TRAIN, "model": offline_hub}})
    assert_refused(cli("run", str(path)), "cannot be reached")
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------- schemas and their docs
def schemas() -> list[type]:
    import instructkit.data.pipeline  # noqa: F401  (registers every step)
    import instructkit.generate  # noqa: F401  (registers every generator, backend and instruction filter)
    from instructkit.generate.backends import BACKENDS, Sampling
    from instructkit.generate.runner import GENERATORS

    return [
        TrainConfig, DataConfig, OptimConfig, EvalConfig, CurateConfig, SplitConfig, Recipe, EvalSettings,
        *STEPS.values(), *METHODS.values(), *(g.config for g in GENERATORS.values()), *BACKENDS.values(),
        Sampling,
    ]  # fmt: skip


@pytest.mark.parametrize("cls", schemas(), ids=lambda c: c.__name__)
def test_every_field_is_documented_right_under_it(cls: type) -> None:
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if f.init and not docs.get(f.name)]
    assert missing == [], f"{cls.__name__}: fields without a docstring under them: {missing}"


def test_describe_flattens_nested_schemas() -> None:
    rows = {r.key: r for r in describe(TrainConfig)}
    assert rows["optim.lr"].type == "float" and rows["optim.lr"].default == "5.0e-05"
    assert rows["optim.lr"].rules == "> 0, finite" and rows["optim.lr"].doc == "Peak learning rate."
    assert rows["save_total_limit"].type == "int | null" and rows["save_total_limit"].rules == ">= 1"
    assert rows["optim.schedule"].type == "'linear' | 'cosine' | 'constant'"


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["train"], ["optim.lr", "Peak learning rate.", "> 0, finite", "save_total_limit"]),
        (["curate"], ["split.val", "num_proc", "Worker processes for per-record steps."]),
        (["run"], ["train_overrides", "eval.max_new_tokens", "Longest generated reply (causal-lm)."]),
        (
            ["continual"],
            ["tasks[N].test_share", "strategy.ratio", "strategy.route", "one of: name, classifier"],
        ),
        (["method", "lora"], ["target_modules", "Rank of the update matrices"]),
        (["step", "near_dedup"], ["threshold", "one of: drop, mark"]),
        (["step"], ["step length", "step pii", "step near_dedup"]),
    ],
)
def test_config_show(args: list[str], expect: list[str]) -> None:
    result = cli("config", "show", *args)
    assert result.exit_code == 0, result.output
    for text in expect:
        assert text in result.output, (text, result.output)


def test_config_show_refuses_unknown_names() -> None:
    assert_refused(cli("config", "show", "method", "qlora"), "qlora")
    result = cli("config", "show", "trainer")
    assert result.exit_code != 0 and "Traceback" not in result.output


@dataclasses.dataclass
class Inner:
    x: int = 1
    """An x."""


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    """An inner."""
    items: list[Inner] = dataclasses.field(default_factory=list)
    """Inners."""


def test_load_checks_lists_of_schemas_and_nulls() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'items\[1\]\.y'"):
        load(Outer, {"items": [{"x": 2}, {"y": 3}]})
    with pytest.raises(ConfigError, match=r"'inner' must be mapping, got a list"):
        load(Outer, {"inner": [1]})
    with pytest.raises(ConfigError, match=r"'items\[0\]\.x' must be int, got 'three'"):
        load(Outer, {"items": [{"x": "three"}]})
    loaded = load(Outer, {"inner": None, "items": [{"x": "3"}]})
    assert loaded.inner == Inner() and loaded.items == [Inner(3)]
