"""One seam per extension: a new method, format, data step and metric are each one module, registered the
way the package's own are (the same decorator and base class), usable by name from config and CLI and
present in the test matrices, with no edit anywhere else. Also: every module of the registry packages
registers what it defines (so the automatic imports do find them).

The toys live in one module written here and imported by path, like a module a user adds; the fixture
removes them from the registries afterwards, so other tests see the package's own entries only.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.continual.strategies import STRATEGIES, Strategy
from instructkit.data.base import STEPS, Step
from instructkit.evaluate.metrics import METRICS
from instructkit.formats import FORMATS, detect_format, format_names, read_records
from instructkit.formats.base import Format
from instructkit.train.methods import METHODS, Method
from instructkit.train.tasks import TASKS, Task

from . import test_curate, test_formats, test_methods

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "examples" / "data" / "demo.jsonl"

TOYS = '''
"""Toys: a method, a format, a filter, a metric and a continual strategy, each registered as the package's
own are."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit.continual.strategies import RoundRecords, Strategy
from instructkit.continual.strategies import register as register_strategy

from instructkit.data.base import Filter
from instructkit.data.base import register as register_step
from instructkit.evaluate.metrics import check_pairs
from instructkit.evaluate.metrics import register as register_metric
from instructkit.formats.base import Format, get_str, require_chat, require_object
from instructkit.formats.base import register as register_format
from instructkit.records import Message, Record, RecordError
from instructkit.train.methods.base import Method, head_parameter_names, train_only
from instructkit.train.methods.base import register as register_method


@register_method
@dataclass
class ToyEmbeddings(Method):
    """Train the input embeddings only (and a new classification head)."""

    name = "toy-embeddings"
    also_norms: bool = False
    """Train the layer norms too."""

    def apply(self, model: Any, task: str) -> Any:
        self.check_task(task)
        emb = model.get_input_embeddings().weight
        names = {n for n, p in model.named_parameters() if p is emb} | head_parameter_names(model, task)
        if self.also_norms:
            names |= {n for n, _ in model.named_parameters() if "norm" in n.lower()}
        train_only(model, names)
        return model


@register_format
class ToyQA(Format):
    """One question and its answer per row: {"ask": ..., "say": ..., "meta": {...}}."""

    name = "toy-qa"
    detect_priority = 5  # its keys overlap no other format's

    @classmethod
    def detect(cls, row: Any) -> bool:
        return isinstance(row, dict) and "ask" in row and "say" in row

    @classmethod
    def parse(cls, row: Any) -> list[Record]:
        row = require_object(row)
        msgs = [Message("user", get_str(row, "ask")), Message("assistant", get_str(row, "say"))]
        return [Record(messages=msgs, meta=dict(row.get("meta") or {})).validated()]

    @classmethod
    def dump_one(cls, record: Record) -> Any:
        msgs = require_chat(record, cls.name)
        if [m.role for m in msgs] != ["user", "assistant"]:
            raise RecordError("unsupported", "toy-qa holds one question and one answer")
        meta = {k: v for k, v in record.meta.items() if k in ("id", "task", "lineage")}
        return {"ask": msgs[0].content, "say": msgs[1].content, "meta": meta}


@register_step
@dataclass
class ToyMaxQuestionMarks(Filter):
    """Drop a record whose reply has more than ``max`` question marks."""

    name = "toy_max_question_marks"
    reason = "too_many_questions"
    max: int = 0
    """Question marks a reply may hold."""

    def keep(self, record: Record) -> bool:
        return record.messages is None or record.messages[-1].content.count("?") <= self.max


@register_strategy
@dataclass
class ToyRepeat(Strategy):
    """Train on every new record ``times`` times; leave the count for the next round in toy.json."""

    name = "toy-repeat"
    times: int = 2
    """How often each new record is repeated in its round."""

    def round_records(self, rnd: Any, new: list[Record]) -> RoundRecords:
        (rnd.folder / "toy.json").parent.mkdir(parents=True, exist_ok=True)
        (rnd.folder / "toy.json").write_text(json.dumps({"task": rnd.task.spec.name, "records": len(new)}))
        return RoundRecords(list(new) * self.times)

    def outputs(self, folder: Path, task: str) -> list[Path]:
        return [folder / "toy.json"]

    def lineage(self, rnd: Any) -> dict[str, Any]:
        return {"toy": json.loads((rnd.folder / "toy.json").read_text())}


@register_metric("toy-length-ratio", "generation")
def length_ratio(predictions: list[str], references: list[str], **_: Any) -> dict[str, float]:
    """Characters predicted per reference character."""
    check_pairs(predictions, references, "toy-length-ratio")
    return {"length_ratio": sum(map(len, predictions)) / max(1, sum(map(len, references)))}
'''


@pytest.fixture
def toys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    path = tmp_path_factory.mktemp("toys") / "instructkit_toys.py"
    path.write_text(TOYS)
    spec = importlib.util.spec_from_file_location("instructkit_toys", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an installed module is: datasets' fingerprinting pickles by name
    spec.loader.exec_module(module)
    yield module
    for registry, key in [(METHODS, "toy-embeddings"), (FORMATS, "toy-qa"), (STEPS, "toy_max_question_marks"),
                          (METRICS, "toy-length-ratio"), (STRATEGIES, "toy-repeat")]:  # fmt: skip
        registry.pop(key, None)
    sys.modules.pop(spec.name, None)


def test_toy_format_from_the_cli_and_in_the_round_trip_matrix(
    toys: ModuleType, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cli = CliRunner()
    out = cli.invoke(app, ["data", "convert", str(DEMO), "--to", "toy-qa", "-o", str(tmp_path / "toy.jsonl"),
                           "--on-error", "skip"])  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = [json.loads(x) for x in (tmp_path / "toy.jsonl").read_text().splitlines()]
    single_turn = [r for r in read_records(DEMO) if [m.role for m in r.messages] == ["user", "assistant"]]
    assert len(rows) == len(single_turn) > 0 and set(rows[0]) == {"ask", "say", "meta"}
    assert detect_format(rows[0]) == "toy-qa" and format_names()[0] == "toy-qa"  # detect_priority 5
    back = cli.invoke(app, ["data", "convert", str(tmp_path / "toy.jsonl"), "--format", "toy-qa", "--to",
                            "instructkit", "-o", str(tmp_path / "back.jsonl")])  # fmt: skip
    assert back.exit_code == 0, back.output
    assert [r.content() for r in read_records(tmp_path / "back.jsonl")] == [r.content() for r in single_turn]

    assert "toy-qa" in test_formats.round_trip_formats()
    test_formats.test_round_trip_property(tmp_path_factory, "toy-qa")


def test_toy_filter_from_a_curate_config_and_in_the_step_matrix(toys: ModuleType, tmp_path: Path) -> None:
    config = tmp_path / "curate.yaml"
    config.write_text(yaml.safe_dump({"steps": ["normalize", {"step": "toy_max_question_marks", "max": 0}]}))
    out = CliRunner().invoke(
        app, ["data", "curate", str(DEMO), "-o", str(tmp_path / "out"), "-c", str(config)]
    )
    assert out.exit_code == 0, out.output
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    dropped = [r for r in rejects if r["step"] == "toy_max_question_marks"]
    expected = sum(1 for r in read_records(DEMO) if r.messages[-1].content.count("?") > 0)
    assert len(dropped) == expected > 0, (
        "the demo data has no reply with a question mark; the check is vacuous"
    )
    assert {r["reason"] for r in dropped} == {"too_many_questions"}
    assert "toy_max_question_marks" in json.dumps(card)

    assert "toy_max_question_marks" in sorted(STEPS)
    test_curate.test_every_registered_step_builds_by_name_and_rebuilds_from_its_params(
        "toy_max_question_marks"
    )


def test_toy_metric_from_the_eval_cli(toys: ModuleType, tmp_path: Path, tiny_llama: str) -> None:
    out = CliRunner().invoke(app, ["eval", "--model", tiny_llama, "--data", str(DEMO), "--limit", "3",
                                   "--max-new-tokens", "4", "--metrics", "toy-length-ratio,rouge",
                                   "-o", str(tmp_path), "--name", "toy"])  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads((tmp_path / "eval" / "toy.json").read_text())
    preds = [json.loads(x) for x in (tmp_path / "eval" / "toy.predictions.jsonl").read_text().splitlines()]
    ratio = sum(len(p["prediction"]) for p in preds) / sum(len(p["reference"]) for p in preds)
    assert doc["metrics"]["length_ratio"] == pytest.approx(ratio) and "rougeL" in doc["metrics"]
    assert METRICS["toy-length-ratio"].module == "instructkit_toys"


def test_toy_method_from_a_train_config_and_in_the_method_matrix(
    toys: ModuleType, tmp_path: Path, tiny_llama: str
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": tiny_llama, "task": "causal-lm", "method": {"name": "toy-embeddings", "also_norms": True},
        "name": "toy", "output_dir": str(tmp_path / "runs"), "bf16": "false", "logging_steps": 1,
        "data": {"train": str(DEMO), "val_share": 0, "max_length": 64},
        "optim": {"lr": 5e-3, "batch_size": 4, "max_steps": 3},
    }))  # fmt: skip
    out = CliRunner().invoke(app, ["train", str(config)])
    assert out.exit_code == 0, out.output
    method = json.loads(next((tmp_path / "runs" / "toy").rglob("method.json")).read_text())
    assert method == {"method": "toy-embeddings", "params": {"also_norms": True}}

    pairs = [p for p in test_methods.method_pairs() if p[0] == "toy-embeddings"]
    assert {k for _, k in pairs} == set(test_methods.MODELS)  # it declares no task limit: every tiny model
    for method_name, key in pairs:
        test_methods.test_method_trains_only_what_it_means_to_and_reloads(method_name, key, tmp_path / key)


def _qa(n: int, offset: int) -> list[dict]:
    people, cities = ["Ada", "Alan", "Grace", "Linus"], ["Paris", "Lagos", "Osaka", "Lima"]
    out = []
    for i in range(offset, offset + n):
        who, where = people[i % 4], cities[(i // 4) % 4]
        question = f"Context: {who} flew to {where} on day {i}.\nQuestion: Where did {who} fly on day {i}?"
        out.append(
            {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": where}]}
        )
    return out


@pytest.mark.slow
def test_toy_strategy_from_a_continual_recipe_with_a_squad_scored_qa_task(
    toys: ModuleType, tmp_path: Path, tiny_llama: str
) -> None:
    from instructkit.continual.strategies import strategy_class

    assert strategy_class("toy-repeat") is toys.ToyRepeat
    for name, rows in [("qa", _qa(12, 0)), ("qa_test", _qa(4, 40)), ("demo", _demo_rows())]:
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "continual.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "toy", "output_dir": str(tmp_path / "runs"), "model": tiny_llama, "task": "causal-lm",
        "method": {"name": "lora", "r": 4, "alpha": 8}, "strategy": {"name": "toy-repeat", "times": 3},
        "train": {"optim": {"lr": 5e-3, "batch_size": 4, "max_steps": 2}, "bf16": "false",
                  "data": {"val_share": 0, "max_length": 64}},
        "tasks": [
            {"name": "qa", "train": "qa.jsonl", "test": "qa_test.jsonl", "metric": "squad", "max_new_tokens": 4},
            {"name": "chat", "train": "demo.jsonl", "test_share": 0.25, "metric": "rouge", "max_new_tokens": 4},
        ],
    }))  # fmt: skip
    out = CliRunner().invoke(app, ["continual", str(recipe)])
    assert out.exit_code == 0, out.output
    run = tmp_path / "runs" / "toy"
    card = json.loads((run / "round-0" / "data" / "card.json").read_text())
    assert card["kept"] == 12 and card["train_records"] == 36  # every QA record three times
    lineage = json.loads((run / "round-1" / "lineage.json").read_text())
    assert lineage["toy"] == {
        "task": "chat",
        "records": json.loads((run / "round-1/data/card.json").read_text())["kept"],
    }
    assert lineage["strategy"] == {"name": "toy-repeat", "params": {"times": 3}}
    scores = json.loads((run / "round-0" / "scores.json").read_text())["scores"]["qa"]
    preds = [json.loads(x) for x in (run / "round-0" / "predictions" / "qa.jsonl").read_text().splitlines()]
    from instructkit.evaluate.metrics import get_metric

    want = get_metric("squad").compute([p["prediction"] for p in preds], [p["reference"] for p in preds])
    assert scores["metric"] == "squad" and scores["n"] == 4
    assert (
        scores["score"] == pytest.approx(want["f1"])
        and scores["details"]["exact_match"] == want["exact_match"]
    )
    # a rerun finds every round fresh: the toy's output is one of the round's outputs
    again = CliRunner().invoke(app, ["continual", str(recipe)])
    assert again.exit_code == 0 and again.output.count("up to date, skipped") == 3, again.output
    (run / "round-1" / "toy.json").unlink()
    third = CliRunner().invoke(app, ["continual", str(recipe)])
    assert (
        third.exit_code == 0
        and "[round-1] running" in third.output
        and (run / "round-1" / "toy.json").is_file()
    )


def _demo_rows() -> list[dict]:
    return [json.loads(line) for line in DEMO.read_text().splitlines()[:16]]


# ------------------------------------------------------------------------------------- every module registers
REGISTRIES = [
    ("instructkit.formats", Format, FORMATS),
    ("instructkit.data", Step, STEPS),
    ("instructkit.train.tasks", Task, TASKS),
    ("instructkit.train.methods", Method, METHODS),
    ("instructkit.continual.strategies", Strategy, STRATEGIES),
]


def _modules(package: str) -> list[ModuleType]:
    pkg = importlib.import_module(package)
    return [
        importlib.import_module(m.name) for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}.")
    ]


@pytest.mark.parametrize(("package", "base", "registry"), REGISTRIES, ids=[r[0] for r in REGISTRIES])
def test_every_module_registers_what_it_defines(package: str, base: type, registry: dict) -> None:
    defined = [
        cls
        for module in _modules(package)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__ and issubclass(cls, base) and "name" in vars(cls)
    ]
    assert defined, f"{package}: found no {base.__name__} classes; the check is vacuous"
    missing = [f"{c.__module__}.{c.__qualname__}" for c in defined if registry.get(c.name) is not c]
    assert not missing, f"defined but not registered: {missing}"
    # Data steps live in data/, the filters of generated instructions among them.
    assert all(cls.__module__.startswith(package) for cls in registry.values())


def test_every_metric_module_registers_a_metric() -> None:
    modules = {m.__name__ for m in _modules("instructkit.evaluate.metrics")}
    assert modules, "found no metric modules"
    assert modules == {m.module for m in METRICS.values()}
    for name, metric in METRICS.items():
        assert callable(metric.function_object()), name


# ------------------------------------------------------------------------------------- names compared nowhere else
def _string_constants(path: Path) -> set[str]:
    """String literals of a module, docstrings left out (docs may name a task)."""
    import ast

    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    }


def test_task_names_are_written_only_in_train_tasks() -> None:
    """Code outside train/tasks asks the task class for a capability instead of comparing a task name, so
    a new head is one module: no literal task name elsewhere in the library. (A metric kind spelled like a
    task, ``token-classification``, names what a metric's predictions hold, not a task.)"""
    from instructkit.evaluate.metrics import KINDS

    src = ROOT / "src" / "instructkit"
    found = [
        f"{path.relative_to(src)}: {name!r}"
        for path in sorted(src.rglob("*.py"))
        if not path.relative_to(src).as_posix().startswith("train/tasks/")
        for name in _string_constants(path) & (set(TASKS) - set(KINDS))
    ]
    assert not found, found
