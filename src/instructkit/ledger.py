"""The run ledger: which stages of a run folder finished, with the hash of the inputs each ran with.

``stages.json`` maps a stage name to ``{inputs, seconds, finished}``. A stage is *fresh* when the ledger
holds the same input hash for it and its outputs exist; a rerun skips fresh stages and redoes the rest, so
a killed run never pays twice for finished work, and a changed input reruns exactly the stages that read
it. The recipe runner (``instructkit run``) and the continual runner (``instructkit continual``, one stage
per round) keep their ledgers here; both hash their inputs with :func:`digest`, :func:`file_digest` and
:func:`tree_digest`, so a digest means the same thing in every run folder.

A bottom module (it imports only ``files`` and ``config``): the runners sit in different layers and neither
may import the other.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from instructkit.config import ConfigError
from instructkit.files import sha256_file, write_text

LEDGER = "stages.json"


def digest(*parts: Any) -> str:
    """SHA-256 over ``parts``, each JSON-encoded with sorted keys (``str`` for anything else) and
    NUL-separated, so ``("a", "bc")`` and ``("ab", "c")`` differ."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """The file's SHA-256, or ``"missing"``: a file that is not there is an input value too."""
    return sha256_file(path) if Path(path).is_file() else "missing"


def tree_digest(folder: Path) -> str:
    """Content hash of a folder's files (relative names + bytes), for a trained model's weights."""
    folder = Path(folder)
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(file_digest(p).encode())
    return h.hexdigest()


class Stages:
    """``stages.json`` of ``run_dir``: the input hash each finished stage was run with. A damaged ledger is
    ``error`` (the runner's own ConfigError subclass) naming the file, so the run stops before it writes."""

    def __init__(self, run_dir: Path, error: type[ConfigError] = ConfigError):
        self.path = Path(run_dir) / LEDGER
        self.done: dict[str, dict[str, Any]] = {}
        self.ran: list[str] = []
        self.skipped: list[str] = []
        if self.path.exists():
            try:
                done = json.loads(self.path.read_text())
            except (ValueError, UnicodeDecodeError) as e:
                raise error(f"{self.path} is damaged ({e}); delete it to rerun every stage") from None
            if not isinstance(done, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("inputs"), str) for v in done.values()
            ):
                raise error(
                    f"{self.path} is damaged (not a mapping of stage -> {{inputs: hash}}); "
                    "delete it to rerun every stage"
                )
            self.done = done

    def fresh(self, stage: str, digest: str, outputs: Sequence[Path]) -> bool:
        entry = self.done.get(stage)
        return bool(entry and entry["inputs"] == digest and all(p.exists() for p in outputs))

    def finish(self, stage: str, digest: str, seconds: float) -> None:
        self.done[stage] = {"inputs": digest, "seconds": round(seconds, 2), "finished": time.time()}
        write_text(json.dumps(self.done, indent=2) + "\n", self.path)

    def run(
        self,
        name: str,
        digest: str,
        outputs: Sequence[Path],
        work: Callable[[], None],
        log: Callable[[str], None],
    ) -> None:
        """Run ``work`` unless stage ``name`` is fresh (same input digest, outputs present), then record
        the digest; ``ran`` and ``skipped`` list the stages in order."""
        if self.fresh(name, digest, outputs):
            log(f"[{name}] up to date, skipped")
            self.skipped.append(name)
            return
        log(f"[{name}] running")
        t0 = time.perf_counter()
        work()
        self.finish(name, digest, time.perf_counter() - t0)
        self.ran.append(name)

    def forget(self, stages: Sequence[str]) -> None:
        """Drop ``stages`` from the ledger (in memory; the next ``finish`` writes it)."""
        for s in stages:
            self.done.pop(s, None)
