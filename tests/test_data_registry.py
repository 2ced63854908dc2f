"""The step registry does not depend on what was imported first: ``import instructkit.data`` alone
registers every step, the instruction filters of generated data (``rouge_novelty``, ...) among them, the
same registry the command line sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parent.parent / "src"


def _registry_after(statement: str) -> dict[str, str]:
    """Step name → defining class (module.qualname), in a fresh interpreter after ``statement``."""
    code = (
        f"{statement}\n"
        "import json\n"
        "from instructkit.data.base import STEPS\n"
        "print(json.dumps({k: f'{c.__module__}.{c.__qualname__}' for k, c in STEPS.items()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=SRC.parent,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_data_alone_registers_every_step_the_cli_sees() -> None:
    alone = _registry_after("import instructkit.data")
    with_cli = _registry_after("import instructkit.cli")
    assert "rouge_novelty" in alone and "near_dedup" in alone
    assert alone == with_cli
