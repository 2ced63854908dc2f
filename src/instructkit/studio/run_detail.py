"""What the run page and the compare page show, read from a run folder (never written to).

:func:`run_detail` is one run folder's page: its stages from the ledger, the metrics before → after, the
loss curves from ``metrics.jsonl``, the config text, the predictions that changed between
``eval/before.predictions.jsonl`` and ``eval/after.predictions.jsonl``, where its report is, and for a
generated or curated set the card's accounting. :func:`compare_runs` puts 2–4 of them side by side: every
metric with its difference to the first run, each run's loss curve, and the config keys (flattened to
dotted paths, ``train.optim.lr``) whose values differ.

Which file holds what, per kind (see :mod:`instructkit.studio.runs` for the kinds):

========== ========================== ================================ ======================================
kind        stages                     loss curves                      config
========== ========================== ================================ ======================================
run         recipe.yaml + stages.json  ``train/metrics.jsonl``          ``recipe.yaml``
continual   round-base, round-K        ``round-K/train/metrics.jsonl``  ``continual.yaml``
train       train                      ``metrics.jsonl``                ``config.yaml``
generate    the card                   —                                the card's ``config``
curate      the card                   —                                the card's ``config``
========== ========================== ================================ ======================================
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from instructkit.studio.runs import read_json, read_jsonl, real_file, recipe_stages, summarize

CONFIG_FILES = {"run": "recipe.yaml", "continual": "continual.yaml", "train": "config.yaml"}
"""The config a run of each kind ran with (generate and curate keep theirs in ``card.json``)."""
CHANGED_LIMIT = 200
"""At most this many changed predictions are sent to the page (the counts are always exact)."""
MISSING = "(not set)"
"""How the config diff shows a key one run's config does not have."""


# ------------------------------------------------------------------------------------------------- stages
def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _ledger_rows(plan: list[str], ledger: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in plan + [s for s in ledger if s not in plan]:
        entry = ledger.get(name)
        done = isinstance(entry, dict)
        rows.append(
            {
                "name": name,
                "status": "done" if done else "todo",
                "seconds": entry.get("seconds") if done else None,
                "finished": entry.get("finished") if done else None,
            }
        )
    return rows


def continual_rounds(folder: Path) -> list[str]:
    """The stages of a continual run: ``round-base`` then ``round-K`` for each task of its recipe."""
    if not real_file(folder / "continual.yaml"):
        raise ValueError("continual.yaml is not a file of the run folder (a symlink)")
    recipe = yaml.safe_load((folder / "continual.yaml").read_text())
    tasks = recipe.get("tasks") if isinstance(recipe, dict) else None
    if not isinstance(tasks, list):
        raise ValueError("continual.yaml lists no tasks")
    return ["round-base", *(f"round-{k}" for k in range(len(tasks)))]


def stages(folder: Path, kind: str) -> list[dict[str, Any]]:
    """``[{name, status: done|todo, seconds, finished}]`` in the order the run goes through them."""
    ledger = read_json(folder / "stages.json")
    ledger = ledger if isinstance(ledger, dict) else {}
    if kind in ("run", "continual"):
        try:
            plan = recipe_stages(folder) if kind == "run" else continual_rounds(folder)
        except Exception:  # a damaged recipe: the ledger's own stages still show (the summary says why)
            plan = []
        return _ledger_rows(plan, ledger)
    if kind == "train":
        done = read_json(folder / "train_metrics.json")
        finished = isinstance(done, dict) and (folder / "model").is_dir()
        return [
            {
                "name": "train",
                "status": "done" if finished else "todo",
                "seconds": done.get("train_seconds") if finished else None,
                "finished": _mtime(folder / "train_metrics.json") if finished else None,
            }
        ]
    # generate, curate: the card is written last, so a card means the one stage finished
    card = read_json(folder / "card.json") or {}
    seconds = (card.get("summary") or {}).get("seconds") if isinstance(card, dict) else None
    return [{"name": kind, "status": "done", "seconds": seconds, "finished": _mtime(folder / "card.json")}]


# ---------------------------------------------------------------------------------------- metrics, curves
def metric_rows(metrics: dict[str, dict[str, float | None]]) -> list[dict[str, Any]]:
    """``{name: {before, after}}`` as rows with ``delta`` (after − before, None when a side is missing)."""
    rows = []
    for name, v in metrics.items():
        b, a = v.get("before"), v.get("after")
        delta = a - b if isinstance(a, int | float) and isinstance(b, int | float) else None
        rows.append({"name": name, "before": b, "after": a, "delta": delta})
    return rows


def curve_points(log: list[dict[str, Any]], key: str) -> list[list[float]]:
    """``[[step, value]]`` of every ``metrics.jsonl`` entry that has a number under ``key``; a point equal to
    the one before is left out (the trainer logs its final evaluation twice, at the last step)."""
    out: list[list[float]] = []
    for e in log:
        if isinstance(e.get(key), int | float) and isinstance(e.get("step"), int | float):
            point = [e["step"], e[key]]
            if not out or out[-1] != point:
                out.append(point)
    return out


def _metrics_files(folder: Path, kind: str) -> list[tuple[str, Path]]:
    """(label, metrics.jsonl) of each training the run did, in order (a continual run: one per round)."""
    if kind == "run":
        return [("", folder / "train" / "metrics.jsonl")]
    if kind == "train":
        return [("", folder / "metrics.jsonl")]
    if kind == "continual":
        rounds = sorted(
            (p for p in folder.glob("round-*") if p.name.removeprefix("round-").isdigit()),
            key=lambda p: int(p.name.removeprefix("round-")),
        )
        return [(p.name, p / "train" / "metrics.jsonl") for p in rounds]
    return []


def loss_curves(folder: Path, kind: str) -> list[dict[str, Any]]:
    """``[{name, metric: loss|eval_loss, round, points}]``: train and eval loss per training (no empty
    series)."""
    out = []
    for label, path in _metrics_files(folder, kind):
        log = read_jsonl(path)
        for metric, title in (("loss", "train loss"), ("eval_loss", "eval loss")):
            points = curve_points(log, metric)
            if points:
                name = f"{label} {title}" if label else title
                out.append({"name": name, "metric": metric, "round": label or None, "points": points})
    return out


def joined_curve(curves: list[dict[str, Any]], metric: str) -> list[list[float]]:
    """One run's ``metric`` curve over all its trainings: each round's steps continue from the last
    round's end (a continual run's rounds, one after another)."""
    out: list[list[float]] = []
    offset = 0.0
    for c in curves:
        if c["metric"] != metric:
            continue
        out += [[offset + x, y] for x, y in c["points"]]
        offset = out[-1][0] if out else offset
    return out


# ---------------------------------------------------------------------------------------------- config
def config_text(folder: Path, kind: str) -> tuple[str | None, str | None]:
    """(the file it came from, relative to the run; its YAML text), or (None, None)."""
    name = CONFIG_FILES.get(kind)
    if name is not None:
        if not real_file(folder / name):
            return None, None
        try:
            return name, (folder / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None, None
    card = read_json(folder / "card.json")
    if isinstance(card, dict) and isinstance(card.get("config"), dict):
        return "card.json (config)", yaml.safe_dump(card["config"], sort_keys=False)
    return None, None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A config as dotted keys: mappings by ``.``, lists by index (``curate.steps[2].key``, the config
    loaders' own way of naming a key); an empty mapping or list is a value of its own."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def config_diff(configs: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """``[{key, values}]`` of the dotted keys whose values are not all equal, in first-seen order; a run
    without the key shows :data:`MISSING`, a run without a readable config has no rows of its own."""
    flat = [flatten(c) if isinstance(c, dict) else None for c in configs]
    keys: dict[str, None] = {}
    for f in flat:
        keys.update(dict.fromkeys(f or {}))
    rows = []
    for key in keys:
        values = [(f.get(key, MISSING) if f is not None else MISSING) for f in flat]
        # 0.005 and 5e-3 are one value; the YAML type decides (True and 1 are not the same setting)
        if any(v != values[0] or type(v) is not type(values[0]) for v in values[1:]):
            rows.append({"key": key, "values": values})
    return rows


# ---------------------------------------------------------------------------------------- predictions
def changed_predictions(folder: Path, limit: int = CHANGED_LIMIT) -> dict[str, Any]:
    """The eval predictions that differ between before and after (the report's own comparison,
    :func:`instructkit.evaluate.report.changed_examples`): ``{total, changed, examples, note}``."""
    from instructkit.evaluate.report import changed_examples

    before, after = folder / "eval" / "before.predictions.jsonl", folder / "eval" / "after.predictions.jsonl"
    if not (real_file(before) and real_file(after)):
        missing = [p.name for p in (before, after) if not real_file(p)]
        return {"total": None, "changed": None, "examples": [], "note": f"eval/{missing[0]} is not written"}
    try:
        total = len(read_jsonl(after))
        changed = changed_examples(folder, n=total)
    except (ValueError, KeyError, TypeError) as e:  # a damaged line: say so, keep the rest of the page
        return {"total": None, "changed": None, "examples": [], "note": f"predictions unreadable: {e}"}
    examples = [
        {"id": e["id"], "prompt": e["input"], "reference": e["reference"], "before": e["before"],
         "after": e["after"], "gain": e["gain"]}
        for e in changed[:limit]
    ]  # fmt: skip
    return {"total": total, "changed": len(changed), "examples": examples, "note": ""}


# ------------------------------------------------------------------------------------------------ card
def card_summary(card: Any) -> dict[str, Any] | None:
    """A data card's accounting (in = kept + rejected), its steps and rejects by reason, its splits."""
    if not isinstance(card, dict):
        return None
    steps = [
        {"step": s.get("step") or s.get("name"), "in": s.get("in"), "kept": s.get("kept"),
         "dropped": s.get("dropped") or {}}
        for s in card.get("steps") or [] if isinstance(s, dict)
    ]  # fmt: skip
    return {
        "accounting": card.get("accounting") or {},
        "rejected_by_reason": card.get("rejected_by_reason") or {},
        "steps": steps,
        "splits": card.get("splits") or {},
        "stopped": card.get("stopped"),
        "generator": card.get("generator"),
    }


# ------------------------------------------------------------------------------------------------ pages
def _rel_if_file(root: Path, path: Path) -> str | None:
    return path.relative_to(root).as_posix() if path.is_file() else None


def run_detail(root: Path, folder: Path, running: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything the run page shows for ``folder`` (a run folder under ``root``)."""
    summary = asdict(summarize(root, folder))
    kind = summary["kind"]
    job = (running or {}).get(summary["path"])
    if job is not None:
        summary["status"] = "running"
    config_file, config = config_text(folder, kind)
    out: dict[str, Any] = {
        "path": summary["path"],
        "kind": kind,
        "summary": summary,
        "job": job,
        "stages": stages(folder, kind),
        "metrics": metric_rows(summary["metrics"]),
        "curves": loss_curves(folder, kind),
        "config": {"file": config_file, "text": config},
        "predictions": changed_predictions(folder) if kind == "run" else None,
        "report": {
            "html": _rel_if_file(root, folder / "report.html"),
            "md": _rel_if_file(root, folder / "report.md"),
        },
        "card": None,
    }
    if kind in ("generate", "curate"):
        out["card"] = card_summary(read_json(folder / "card.json"))
        out["card_path"] = _rel_if_file(root, folder / "card.json")
    elif kind == "run" and (folder / "data" / "card.json").is_file():
        out["card"] = card_summary(read_json(folder / "data" / "card.json"))
        out["card_path"] = _rel_if_file(root, folder / "data" / "card.json")
    return out


def _config_mapping(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


def compare_runs(
    root: Path, folders: list[Path], running: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The compare page for 2–4 run folders: the first is the baseline of every difference."""
    runs = []
    for folder in folders:
        summary = asdict(summarize(root, folder))
        if summary["path"] in (running or {}):
            summary["status"] = "running"
        kind = summary["kind"]
        curves = loss_curves(folder, kind)
        _, text = config_text(folder, kind)
        runs.append(
            {
                "path": summary["path"],
                "kind": kind,
                "status": summary["status"],
                "metrics": summary["metrics"],
                "curves": {m: joined_curve(curves, m) for m in ("loss", "eval_loss")},
                "config": _config_mapping(text),
            }
        )
    names: dict[str, None] = {}
    for r in runs:
        names.update(dict.fromkeys(r["metrics"]))
    metrics = []
    for name in names:
        cells = [r["metrics"].get(name) or {"before": None, "after": None} for r in runs]
        first = cells[0]["after"]
        values = []
        for c in cells:
            a = c["after"]
            delta = a - first if isinstance(a, int | float) and isinstance(first, int | float) else None
            values.append({"before": c["before"], "after": a, "delta": delta})
        metrics.append({"name": name, "values": values})
    diff = config_diff([r["config"] for r in runs])
    return {
        "paths": [r["path"] for r in runs],
        "runs": [{k: r[k] for k in ("path", "kind", "status", "curves")} for r in runs],
        "metrics": metrics,
        "config_diff": diff,
        "configs_missing": [r["path"] for r in runs if r["config"] is None],
    }
