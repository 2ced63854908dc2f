"""The code keeps a shape a newcomer can read: no function over 100 lines (nested functions counted in
their parent, from ``def`` to its last line), and no module over about 500 lines unless its docstring says
why (a paragraph starting ``Why one file:``). Read with ``ast`` from every module under
``src/instructkit``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "instructkit"
MAX_FUNCTION = 100
MAX_FILE = 520
"""About 500: a module a few lines over it (training.py at 511) is not worth splitting mid-thought."""
WHY = "Why one file:"


def _modules() -> list[tuple[str, str]]:
    return [(str(p.relative_to(SRC)), p.read_text()) for p in sorted(SRC.rglob("*.py"))]


def long_functions(modules: list[tuple[str, str]]) -> list[str]:
    out = []
    for name, source in modules:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION:
                    out.append(f"{name}:{node.lineno} {node.name} is {length} lines")
    return out


def long_files(modules: list[tuple[str, str]]) -> list[str]:
    out = []
    for name, source in modules:
        lines = source.count("\n")
        if lines > MAX_FILE and WHY not in (ast.get_docstring(ast.parse(source)) or ""):
            out.append(f"{name} is {lines} lines and its docstring does not say why ('{WHY} ...')")
    return out


def test_no_function_over_100_lines() -> None:
    assert long_functions(_modules()) == []


def test_no_module_over_500_lines_without_a_reason() -> None:
    assert long_files(_modules()) == []


def test_the_checks_catch_what_they_are_for() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION))
    long_def = f"def f():\n{body}\n"
    assert long_functions([("m.py", long_def)]) == ["m.py:1 f is 101 lines"]
    assert long_functions([("m.py", "def f():\n    return 1\n")]) == []
    filler = "x = 1\n" * (MAX_FILE + 1)
    assert long_files([("m.py", '"""A module."""\n' + filler)])
    assert long_files([("m.py", f'"""A module.\n\n{WHY} it is one table."""\n' + filler)]) == []
