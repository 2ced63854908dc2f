"""The layer picture holds: the library never imports the CLI; records import nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "instructkit"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_library_never_imports_cli() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if "cli" not in p.relative_to(SRC).parts and any(n.startswith("instructkit.cli") for n in _imports(p))
    ]
    assert offenders == []


def test_records_and_formats_stay_low() -> None:
    ours = {n for n in _imports(SRC / "records.py") if n.startswith("instructkit")}
    assert ours == set()
    for p in (SRC / "formats").rglob("*.py"):
        deps = {
            n for n in _imports(p) if n.startswith("instructkit") and not n.startswith("instructkit.formats")
        }
        assert deps <= {"instructkit.records"}, (p.name, deps)
