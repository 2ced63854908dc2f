"""The layer table holds: every module imports only the layers its row allows, and no module imports another
package's private name. The table is README's Layout table (DESIGN.md's, updated where the code showed a
better one; README says why); a new top-level module or package fails until it is given a row.

Imports are read with ``ast`` from every module under ``src/instructkit`` (inside functions too: a lazy
import is still a dependency), relative imports resolved.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "instructkit"

# Row → what its modules may import besides themselves. A row is a dotted prefix under ``instructkit``;
# a module belongs to the longest row that prefixes it, and may import anything under its own row.
# ``train.tasks`` (the task registry and its capabilities) and ``train.saved_model`` (a trained run's
# folder) are train's public face for evaluate and serve, which must not reach the training loop.
# The package root (``instructkit.__version__``) and the bottom modules (``BOTTOM``) are open to all.
BOTTOM = {"files"}
"""Writing and hashing files: every layer writes atomically and hashes with the same function."""
LAYERS: dict[str, set[str]] = {
    "files": set(),
    "config": set(),
    # the run ledger (stages.json) and the stage digests of run folders: recipe and continual runs
    "ledger": {"config"},
    "records": set(),
    "benchmark_sets": set(),
    "models": set(),
    # the one decoding engine (continuous batching, prefix cache, drafts, packed linears) and its batch
    # front (``generate``): serve and chat, eval, the local generation backend, continual scoring and
    # HumanEval sampling all decode through it
    "decoding": {"models"},
    # the code sandbox: stdlib only (its worker runs as a script in isolated mode)
    "sandbox": set(),
    "formats": {"records"},
    "templates": {"records", "models"},
    "token_loss": {"templates"},
    # task records (classification, NER, relation, QA, translation, summarization, dialogue, code), the
    # instruction templates that render them and the parsers that read a reply back; evaluate scores with
    # the same parsers, data and recipes build instruction data with the templates
    "tasks": {"records", "formats", "config"},
    "data": {"records", "formats", "config", "models", "benchmark_sets", "tasks"},
    "train.tasks": {"records", "templates", "models"},
    "train.saved_model": {"models", "train.tasks", "train.methods", "train.config"},
    "train": {"records", "formats", "templates", "models", "config", "token_loss"},
    "evaluate": {
        "tasks",
        "records",
        "models",
        "templates",
        "token_loss",
        "benchmark_sets",
        "train.tasks",
        "train.saved_model",
        "decoding",
        "sandbox",
    },
    "serve": {"models", "templates", "train.tasks", "train.saved_model", "decoding"},
    # generation: the local backend decodes through the one engine (decoding) and loads a trained run
    # (train.saved_model and train.tasks, train's public face); generated records go through the curation steps
    # (data/instruction_filters.py: the similarity and blacklist filters among them); code tasks run in the
    # sandbox.
    "generate": {
        "records",
        "config",
        "formats",
        "models",
        "templates",
        "data",
        "decoding",
        "sandbox",
        "train.saved_model",
        "train.tasks",
    },
    "recipe": {
        "config",
        "records",
        "formats",
        "models",
        "data",
        "train",
        "evaluate",
        "generate",
        "tasks",
        "ledger",
        "decoding",
    },
    # continual runs: a round trains (train) and scores what it trained (evaluate); its ledger is the
    # bottom one the recipe runner keeps too
    "continual": {"config", "records", "formats", "models", "train", "evaluate", "ledger", "decoding"},
    # the studio: pages over run folders; it reads every layer's outputs, starts the CLI's jobs as
    # subprocesses, chats through serve's loading and the one engine, and exports through serve.export
    "studio": {
        "config",
        "files",
        "ledger",
        "records",
        "formats",
        "models",
        "templates",
        "token_loss",
        "tasks",
        "data",
        "train",
        "evaluate",
        "generate",
        "recipe",
        "continual",
        "serve",
        "decoding",
    },
    "cli": {"*"},
}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def row_of(name: str) -> str | None:
    """The row of ``name`` (dotted, without ``instructkit.``): the longest row key that prefixes it."""
    rows = [key for key in LAYERS if _under(name, key)]
    return max(rows, key=len) if rows else None


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def imported(
    name: str, is_package: bool, source: str, *, runtime: bool = False
) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of each import of ours in ``source``; ``module`` without ``instructkit.``.
    ``from instructkit.x import y`` where ``y`` is a module counts as importing ``x.y``. ``runtime``: leave
    out the imports under ``if TYPE_CHECKING:``."""
    out = []
    here = name.split(".") if is_package else name.split(".")[:-1]
    tree = ast.parse(source)
    for node in _runtime_nodes(tree) if runtime else ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _under(a.name, "instructkit"):
                    out.append((node.lineno, a.name.removeprefix("instructkit").lstrip("."), []))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                module = ".".join(base)
            elif node.module and _under(node.module, "instructkit"):
                module = node.module.removeprefix("instructkit").lstrip(".")
            else:
                continue
            for a in node.names:
                sub = f"{module}.{a.name}" if module else a.name
                is_module = (SRC / sub.replace(".", "/")).with_suffix(".py").exists() or (
                    SRC / sub.replace(".", "/")
                ).is_dir()
                out.append((node.lineno, sub, []) if is_module else (node.lineno, module, [a.name]))
    return out


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _package_of(module: str) -> str:
    """The package a module belongs to: itself when it is a package (a folder), else its parent. A private
    name may be imported only within one package (``data.filters`` from ``data.base``), not from a
    subpackage or a parent package (``data.engines.ray`` from ``data.split``).
    A top-level module (``recipe``, ``config``) is a layer of its own, so it counts as its own package."""
    if (SRC / module.replace(".", "/")).is_dir():
        return module
    return module.rpartition(".")[0] or module


def violations(modules: dict[str, tuple[bool, str]]) -> list[str]:
    """Every import that breaks the table or takes a private name from another package (subpackages and
    parent packages included), as readable lines.
    ``modules``: dotted name (without ``instructkit.``) → (is a package, source)."""
    problems = []
    for name, (is_package, source) in sorted(modules.items()):
        mine = row_of(name)
        if mine is None:
            problems.append(f"{name}: no row in LAYERS (give the new layer a row, README Layout too)")
            continue
        allowed = LAYERS[mine] | BOTTOM
        for line, target, names in imported(name, is_package, source):
            if not target:  # the package root: __version__
                continue
            theirs = row_of(target)
            if not ("*" in allowed or _under(target, mine) or any(_under(target, a) for a in allowed)):
                problems.append(
                    f"{name}:{line} imports {target} ({theirs}); {mine} may import {sorted(allowed)}"
                )
            package = name if is_package else (name.rpartition(".")[0] or name)
            if package != _package_of(target):
                hidden = [p for p in target.split(".") if _private(p)] + [n for n in names if _private(n)]
                if hidden:
                    problems.append(f"{name}:{line} imports private {', '.join(hidden)} from {target}")
    return list(dict.fromkeys(problems))  # one line per (module, line, target), however many names


def _package_modules() -> dict[str, tuple[bool, str]]:
    return {
        module_name(p): (p.name == "__init__.py", p.read_text())
        for p in SRC.rglob("*.py")
        if p.relative_to(SRC).parts != ("__init__.py",)
    }


def cycles(modules: dict[str, tuple[bool, str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (strongly connected components
    of more than one module), over the imports that run (lazy ones inside functions included; those under
    ``if TYPE_CHECKING:`` left out). An import of a package's name counts as importing its ``__init__``."""
    graph: dict[str, set[str]] = {}
    for name, (is_package, source) in modules.items():
        targets = set()
        for _, target, _ in imported(name, is_package, source, runtime=True):
            parts = target.split(".")
            found = next(
                (".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in modules),
                None,
            )
            if found and found != name:
                targets.add(found)
        graph[name] = targets
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_no_import_cycle() -> None:
    assert cycles(_package_modules()) == []


def test_the_cycle_check_finds_one() -> None:
    fake = {
        "data.pipeline": (False, "from instructkit.data.engines.local import run"),
        "data.engines.local": (False, "def f():\n    from instructkit.data.pipeline import curate"),
        "data.base": (
            False,
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from instructkit.data.pipeline import x",
        ),
    }
    assert cycles(fake) == [["data.engines.local", "data.pipeline"]]


def test_every_import_follows_the_layer_table() -> None:
    assert violations(_package_modules()) == []


def test_library_never_imports_cli() -> None:
    # Also held by the table (no row but cli's allows cli); stated on its own because STYLE.md asks for it.
    offenders = [
        f"{name}:{line}"
        for name, (pkg, source) in _package_modules().items()
        if not _under(name, "cli")
        for line, target, _ in imported(name, pkg, source)
        if _under(target, "cli")
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        ("records", "from instructkit.formats import read_records", "records:1 imports formats"),
        ("formats.alpaca", "import instructkit.data.pipeline", "formats.alpaca:1 imports data.pipeline"),
        ("evaluate.scoring", "    from instructkit.train.training import train", "imports train.training"),
        ("evaluate.scoring", "from instructkit.train import training", "imports train.training"),
        ("serve.chat", "from ..train.trainer import x", "serve.chat:1 imports train.trainer"),
        ("train.tasks.base", "from instructkit.train.methods import METHODS", "imports train.methods"),
        ("data.pipeline", "from instructkit.cli import app", "data.pipeline:1 imports cli"),
        ("evaluate.scoring", "from instructkit.train.tasks.seq_cls import _label", "private _label"),
        ("recipe", "from instructkit.config import _parse", "private _parse"),
        ("data.base", "from instructkit.formats._hidden import x", "private _hidden"),
        ("data.engines.ray", "from instructkit.data.split import _hash", "private _hash"),
        ("continual.runner", "from instructkit.continual.strategies.base import _x", "private _x"),
        ("newlayer", "x = 1", "newlayer: no row"),
    ],
)
def test_the_check_catches_a_bad_import(name: str, source: str, expected: str) -> None:
    found = violations({name: (False, source.strip())})
    assert any(expected in p for p in found), found


def test_the_check_passes_allowed_imports() -> None:
    fine = {
        "evaluate.scoring": (False, "from instructkit.train.saved_model import load_trained\nimport json"),
        "serve.chat": (
            False,
            "from instructkit.train.tasks import TASKS\nfrom instructkit import __version__",
        ),
        "train.training": (
            False,
            "from instructkit.train.methods import build_method\nfrom . import packing",
        ),
        "cli.eval": (False, "from instructkit.cli.common import console\nfrom instructkit.recipe import x"),
        "data.filters": (False, "from instructkit.data.base import _private_but_same_package"),
    }
    assert violations(fine) == []


# Keywords only a model's ``generate`` takes: a call with any of them decodes outside the engine.
GENERATE_KEYWORDS = {"input_ids", "max_new_tokens", "attention_mask", "do_sample", "num_return_sequences"}


def decoding_outside_the_engine(modules: dict[str, tuple[bool, str]]) -> list[str]:
    """Calls of a model's ``generate`` (``X.generate(...)`` where X's name holds "model", or that passes one
    of :data:`GENERATE_KEYWORDS`) in modules outside ``decoding``: every local reply must come from the one
    engine (``decoding/``), so eval, generation, continual scoring, HumanEval and chat get its batching,
    prefix cache and drafts, and its greedy replies."""
    found = []
    for name, (_, source) in modules.items():
        if _under(name, "decoding"):
            continue
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "generate":
                continue
            receiver = ast.unparse(node.func.value)
            if "model" in receiver.lower() or {k.arg for k in node.keywords} & GENERATE_KEYWORDS:
                found.append(f"{name}:{node.lineno} calls {receiver}.generate")
    return found


def test_every_local_reply_comes_from_the_decoding_engine() -> None:
    assert decoding_outside_the_engine(_package_modules()) == []


def test_the_engine_check_finds_a_plain_generate_call() -> None:
    fake = {
        "evaluate.x": (False, "def f(m, ids):\n    return m.generate(input_ids=ids, max_new_tokens=4)"),
        "serve.chat": (False, "out = self.model.generate(**enc)"),
        "cli.generate.common": (False, "runner.generate(name, cfg, out_dir)"),  # the generation runner
        "decoding.batch": (False, "model.generate(input_ids=ids)"),  # the engine's own baseline
    }
    assert decoding_outside_the_engine(fake) == [
        "evaluate.x:2 calls m.generate",
        "serve.chat:1 calls self.model.generate",
    ]
