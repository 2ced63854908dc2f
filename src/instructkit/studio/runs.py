"""Which folders under ``--runs`` are runs, of what kind, how far they got and what they measured.

A folder's kind comes from the file its command writes first (the markers the commands themselves check):

============ ==============================================================
kind          marker
============ ==============================================================
run           ``recipe.yaml`` (``instructkit run``; ``stages.json`` is its ledger)
continual     ``continual.yaml`` (``instructkit continual``)
train         ``config.yaml`` beside ``metrics.jsonl``, ``model/`` or ``checkpoints/``
generate      ``card.json`` with a ``generator`` (``instructkit generate``)
curate        ``card.json`` with ``steps`` (``instructkit data curate``)
============ ==============================================================

Discovery stops at a run folder: the ``train/`` and ``data/`` inside a recipe run are its parts, shown on
its page, not rows of their own. Everything here only reads, and a damaged file makes a row say so rather
than fail the listing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("run", "continual", "train", "generate", "curate")
MAX_DEPTH = 4
"""How deep under ``--runs`` discovery looks for run folders (``runs/<group>/<name>/`` and a bit more)."""
SKIP = {"checkpoints", "model", "logs", "plots", "adapters", "__pycache__", "node_modules"}
"""Folders never holding a run of their own (weights, logs), skipped to keep a listing fast."""


@dataclass
class RunSummary:
    """One row of the runs table."""

    path: str
    """The folder, relative to ``--runs``."""
    kind: str
    status: str
    """``done``, ``incomplete`` (started, not finished: killed, failed or still running from a terminal),
    ``running`` (a job the studio started and is watching) or ``damaged``."""
    stage: str | None = None
    """The stage it is at (the first one the ledger does not hold), or the last one when done."""
    stages_done: list[str] = field(default_factory=list)
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Headline metrics ``{name: {"before": x, "after": y}}`` (one side may be None)."""
    started: float | None = None
    """Unix time of the run's first file."""
    seconds: float | None = None
    """How long its finished stages took."""
    note: str = ""


def real_file(path: Path) -> bool:
    """Whether ``path`` is a file reached through no symlink and no ``..``. The folders the studio reads in
    are resolved (:meth:`RunsRoot.resolve`, :func:`walk`), so a symlink below one could only lead elsewhere,
    maybe out of ``--runs``, as could a ``../`` in a file name a card gives: neither is read (the commands
    write no such thing)."""
    try:
        path = Path(path)
        return path.is_file() and os.path.realpath(path) == str(path.absolute())
    except (OSError, ValueError):
        return False


def read_json(path: Path) -> Any:
    """``path``'s JSON, or None when it is missing, damaged or a symlink (the caller says what that means)."""
    if not real_file(path):
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The JSON objects of ``path``'s lines (damaged lines skipped: the file may be being appended to); none
    for a symlink (:func:`real_file`)."""
    out: list[dict[str, Any]] = []
    if not real_file(path):
        return out
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    out.append(obj)
                    if limit is not None and len(out) >= limit:
                        break
    except OSError:
        pass
    return out


def kind_of(folder: Path) -> str | None:
    """The run kind of ``folder`` (see the module's table), or None."""
    if (folder / "recipe.yaml").is_file():
        return "run"
    if (folder / "continual.yaml").is_file():
        return "continual"
    if (folder / "config.yaml").is_file() and any(
        (folder / p).exists() for p in ("metrics.jsonl", "model", "checkpoints", "train_metrics.json")
    ):
        return "train"
    if (folder / "card.json").is_file():
        card = read_json(folder / "card.json")
        if isinstance(card, dict):
            if "generator" in card:
                return "generate"
            if "steps" in card:
                return "curate"
    return None


def walk(root: Path, visit: Callable[[Path], bool], max_depth: int = MAX_DEPTH) -> None:
    """Call ``visit`` on ``root`` and its folders, parents first, in sorted order, down to ``max_depth``;
    a folder whose ``visit`` returns True is not descended into. Symlinked, hidden and ``SKIP`` folders are
    left out (a symlink could lead out of the runs folder)."""

    def go(folder: Path, depth: int) -> None:
        if visit(folder) or depth >= max_depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return
        for child in children:
            if child.name not in SKIP and not child.name.startswith("."):
                go(child, depth + 1)

    go(root, 0)


def discover(root: Path) -> list[Path]:
    """Every run folder under ``root`` (depth ``MAX_DEPTH``), sorted by path; not below a run folder."""
    found: list[Path] = []

    def visit(folder: Path) -> bool:
        if kind_of(folder) is None:
            return False
        found.append(folder)
        return True

    walk(root, visit)
    return found


def _ledger(folder: Path) -> dict[str, Any]:
    led = read_json(folder / "stages.json")
    return led if isinstance(led, dict) else {}


def _started(folder: Path, marker: str) -> float | None:
    try:
        return os.stat(folder / marker).st_mtime
    except OSError:
        return None


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else ``{}`` (a damaged file's list or string reads as empty)."""
    return value if isinstance(value, dict) else {}


def _seconds(ledger: dict[str, Any]) -> float:
    """The ledger's stages' ``seconds`` added up (a damaged entry counts 0)."""
    values = (_mapping(v).get("seconds") for v in ledger.values())
    return round(sum(v for v in values if isinstance(v, int | float)), 2)


def _eval_metrics(folder: Path) -> dict[str, dict[str, float | None]]:
    before = _mapping(read_json(folder / "eval" / "before.json"))
    after = _mapping(read_json(folder / "eval" / "after.json"))
    b, a = _mapping(before.get("metrics")), _mapping(after.get("metrics"))
    out: dict[str, dict[str, float | None]] = {}
    for name in list(b) + [n for n in a if n not in b]:
        x, y = b.get(name), a.get(name)
        if isinstance(x, int | float) or isinstance(y, int | float):
            out[name] = {"before": x if isinstance(x, int | float) else None,
                         "after": y if isinstance(y, int | float) else None}  # fmt: skip
    return out


def recipe_stages(folder: Path) -> list[str]:
    """The stages a recipe run goes through, in the runner's order: ``generate`` and ``template`` when its
    recipe has those sections, then ``data, before, train, after, report``."""
    import yaml

    if not real_file(folder / "recipe.yaml"):
        raise ValueError("not a file of the run folder (a symlink)")
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    if not isinstance(recipe, dict):
        raise ValueError("not a mapping")
    first = [name for name in ("generate", "template") if recipe.get(name)]
    return [*first, "data", "before", "train", "after", "report"]


def summarize(root: Path, folder: Path) -> RunSummary:
    """The runs-table row of ``folder``; a file damaged past what the row reads around makes it ``damaged``,
    with the reason in ``note`` (one folder never fails the listing)."""
    rel = folder.resolve().relative_to(root.resolve()).as_posix()
    kind = kind_of(folder) or "unknown"
    s = RunSummary(path=rel, kind=kind, status="incomplete")
    try:
        _fill(s, folder, kind)
    except Exception as e:  # any damage: the row says so, the listing goes on
        s.status, s.note = "damaged", f"{type(e).__name__}: {e}"[:300]
    return s


def _fill(s: RunSummary, folder: Path, kind: str) -> None:
    if kind == "run":
        led = _ledger(folder)
        try:
            plan = recipe_stages(folder)
        except Exception as e:  # a recipe the runner would refuse: the row says so
            plan, s.status, s.note = list(led), "damaged", f"recipe.yaml: {e}"
        s.stages_done = [st for st in plan if st in led]
        todo = [st for st in plan if st not in led]
        if s.status != "damaged":
            s.status = "done" if not todo else "incomplete"
        s.stage = todo[0] if todo else (plan[-1] if plan else None)
        s.metrics = _eval_metrics(folder)
        s.started = _started(folder, "recipe.yaml")
        s.seconds = _seconds(led)
    elif kind == "continual":
        led = _ledger(folder)
        s.stages_done = list(led)
        s.status = (
            "done"
            if (folder / "matrix.json").is_file() and (folder / "report.md").is_file()
            else "incomplete"
        )
        s.stage = s.stages_done[-1] if s.stages_done else None
        s.started = _started(folder, "continual.yaml")
        s.seconds = _seconds(led)
        matrix = read_json(folder / "matrix.json")
        if isinstance(matrix, dict):
            # matrix.json's "summary": ACC, BWT, FWT, forgetting, general delta (continual/report.py)
            for name, value in _mapping(matrix.get("summary") or matrix.get("metrics")).items():
                if isinstance(value, int | float):
                    s.metrics[name] = {"before": None, "after": value}
    elif kind == "train":
        done = read_json(folder / "train_metrics.json")
        s.status = "done" if isinstance(done, dict) and (folder / "model").is_dir() else "incomplete"
        s.stage = "train"
        s.started = _started(folder, "config.yaml")
        log = read_jsonl(folder / "metrics.jsonl")
        losses = [e["loss"] for e in log if isinstance(e.get("loss"), int | float)]
        if losses:
            s.metrics["loss"] = {"before": losses[0], "after": losses[-1]}
        if isinstance(done, dict):
            seconds = done.get("train_seconds")
            s.seconds = seconds if isinstance(seconds, int | float) else None
            if isinstance(done.get("val_loss"), int | float):
                s.metrics["val_loss"] = {"before": None, "after": done["val_loss"]}
    else:  # generate, curate: the card is written last, so a card means done
        card = _mapping(read_json(folder / "card.json"))
        s.status = "done"
        s.stage = kind
        s.started = _started(folder, "card.json")
        acc = _mapping(card.get("accounting"))
        for key in ("in", "kept", "rejected"):
            if isinstance(acc.get(key), int | float):
                s.metrics[key] = {"before": None, "after": acc[key]}


def list_runs(root: Path) -> list[dict[str, Any]]:
    return [asdict(summarize(root, f)) for f in discover(root)]
