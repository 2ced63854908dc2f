"""The studio's run page and compare API (``/api/run``, ``/api/compare``) over the session's tiny recipe runs
``a`` and ``b``: every number is checked against the file it comes from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from instructkit.studio.app import build_app
from instructkit.studio.config import StudioConfig


def client(root: Path) -> TestClient:
    return TestClient(build_app(StudioConfig(runs=str(root))))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def logged(path: Path, key: str) -> list[list[float]]:
    """(step, value) of each metrics.jsonl line with ``key``, a repeat of the line before left out."""
    out: list[list[float]] = []
    for e in lines(path):
        if key in e and (not out or out[-1] != [e["step"], e[key]]):
            out.append([e["step"], e[key]])
    return out


def numeric(doc: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in doc["metrics"].items() if isinstance(v, int | float)}


def test_run_page_of_a_holds_its_stages_metrics_loss_config_and_report(studio_root: Path) -> None:
    a = studio_root / "a"
    with client(studio_root) as c:
        d = c.get("/api/run", params={"path": "a"}).json()
    ledger = json.loads((a / "stages.json").read_text())
    assert [(s["name"], s["status"]) for s in d["stages"]] == [(n, "done") for n in ledger]
    assert [s["seconds"] for s in d["stages"]] == [v["seconds"] for v in ledger.values()]
    before = numeric(json.loads((a / "eval" / "before.json").read_text()))
    after = numeric(json.loads((a / "eval" / "after.json").read_text()))
    assert {m["name"]: (m["before"], m["after"]) for m in d["metrics"]} == {
        k: (before[k], after[k]) for k in after
    }
    assert {m["name"]: m["delta"] for m in d["metrics"]} == {k: after[k] - before[k] for k in after}
    curves = {c["metric"]: c["points"] for c in d["curves"]}
    assert curves["loss"] == logged(a / "train" / "metrics.jsonl", "loss") and len(curves["loss"]) == 4
    assert curves["eval_loss"] == logged(a / "train" / "metrics.jsonl", "eval_loss")
    assert d["config"] == {"file": "recipe.yaml", "text": (a / "recipe.yaml").read_text()}
    assert d["report"] == {"html": "a/report.html", "md": "a/report.md"}
    card = json.loads((a / "data" / "card.json").read_text())
    assert d["card"]["accounting"] == card["accounting"] and d["card_path"] == "a/data/card.json"
    assert d["job"] is None and d["summary"]["status"] == "done"


def test_changed_predictions_equal_a_direct_comparison_of_the_two_files(
    studio_root: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(studio_root / "a", runs / "a", ignore=shutil.ignore_patterns("checkpoints", "model"))
    after_file = runs / "a" / "eval" / "after.predictions.jsonl"
    rows = lines(after_file)
    for i in (1, 4):  # two answers that changed after training
        rows[i]["prediction"] = f"changed {i}"
    after_file.write_text("".join(json.dumps(r) + "\n" for r in rows))

    before = {r["id"]: r for r in lines(runs / "a" / "eval" / "before.predictions.jsonl")}
    expected = {
        r["id"]: (r["prompt"], r["reference"], before[r["id"]]["prediction"], r["prediction"])
        for r in rows
        if before[r["id"]]["prediction"] != r["prediction"]
    }
    assert len(expected) == 2
    with client(runs) as c:
        p = c.get("/api/run", params={"path": "a"}).json()["predictions"]
    assert (p["changed"], p["total"]) == (2, len(rows))
    assert {
        e["id"]: (e["prompt"], e["reference"], e["before"], e["after"]) for e in p["examples"]
    } == expected
    with client(studio_root) as c:  # the session's own run: nothing changed, all counted
        q = c.get("/api/run", params={"path": "a"}).json()["predictions"]
    direct = sum(
        x["prediction"] != y["prediction"]
        for x, y in zip(
            lines(studio_root / "a" / "eval" / "before.predictions.jsonl"),
            lines(studio_root / "a" / "eval" / "after.predictions.jsonl"),
            strict=True,
        )
    )
    assert (q["changed"], q["total"]) == (direct, 6)


def test_compare_a_and_b_diffs_exactly_the_keys_that_differ_and_subtracts_a(studio_root: Path) -> None:
    with client(studio_root) as c:
        r = c.get("/api/compare", params=[("path", "a"), ("path", "b")])
    assert r.status_code == 200, r.text
    d = r.json()
    ra = yaml.safe_load((studio_root / "a" / "recipe.yaml").read_text())
    rb = yaml.safe_load((studio_root / "b" / "recipe.yaml").read_text())
    assert {row["key"]: row["values"] for row in d["config_diff"]} == {
        "name": ["a", "b"],
        "train.optim.lr": [ra["train"]["optim"]["lr"], rb["train"]["optim"]["lr"]],
    }
    assert d["config_diff"][1]["values"] == [5e-3, 2e-2]
    after_a = numeric(json.loads((studio_root / "a" / "eval" / "after.json").read_text()))
    after_b = numeric(json.loads((studio_root / "b" / "eval" / "after.json").read_text()))
    rows = {m["name"]: m["values"] for m in d["metrics"]}
    assert set(rows) == set(after_a) | set(after_b)
    for name, (va, vb) in rows.items():
        assert (va["after"], vb["after"]) == (after_a[name], after_b[name])
        assert va["delta"] == 0 and vb["delta"] == after_b[name] - after_a[name]
    assert rows["loss"][1]["delta"] != 0  # the runs really differ (4x the learning rate)
    for run in d["runs"]:
        log = studio_root / run["path"] / "train" / "metrics.jsonl"
        assert run["curves"]["loss"] == logged(log, "loss")
        assert run["curves"]["eval_loss"] == logged(log, "eval_loss")
    assert d["paths"] == ["a", "b"] and d["configs_missing"] == []


@pytest.mark.parametrize("paths", [["a"], ["a", "b", "curated", "a", "b"], []])
def test_compare_takes_two_to_four_runs(studio_root: Path, paths: list[str]) -> None:
    with client(studio_root) as c:
        r = c.get("/api/compare", params=[("path", p) for p in paths])
    err = r.json()["error"]
    assert r.status_code == 400 and err["field"] == "path" and f"got {len(paths)}" in err["message"]


def test_compare_refuses_the_same_run_twice_and_a_folder_that_is_no_run(studio_root: Path) -> None:
    with client(studio_root) as c:
        twice = c.get("/api/compare", params=[("path", "a"), ("path", "a/")])
        inputs = c.get("/api/compare", params=[("path", "a"), ("path", "inputs")])
        run = c.get("/api/run", params={"path": "inputs"})
    assert twice.status_code == 400 and twice.json()["error"]["field"] == "path"
    assert inputs.status_code == 404 and "'inputs' is not a run folder" in inputs.json()["error"]["message"]
    assert run.status_code == 404 and run.json()["error"]["field"] == "path"


@pytest.mark.parametrize("bad", ["../x", "/etc", "a/../../x", "..", "a\\..\\..\\x", "a/\0"])
def test_run_and_compare_refuse_paths_out_of_the_runs_folder(studio_root: Path, bad: str) -> None:
    with client(studio_root) as c:
        run = c.get("/api/run", params={"path": bad})
        cmp = c.get("/api/compare", params=[("path", "a"), ("path", bad)])
    for r in (run, cmp):
        assert r.status_code == 403 and r.json()["error"]["code"] == "path_refused", r.text


def test_run_page_says_which_studio_job_is_running_there(studio_root: Path) -> None:
    class Jobs:  # the shape of studio/jobs.py's running(): run path -> {job, kind, stage}
        def running(self) -> dict[str, dict[str, Any]]:
            return {"a": {"job": "job-7", "kind": "run", "stage": "train"}}

    app = build_app(StudioConfig(runs=str(studio_root)))
    app.state.studio.jobs = Jobs()
    with TestClient(app) as c:
        d = c.get("/api/run", params={"path": "a"}).json()
        other = c.get("/api/run", params={"path": "b"}).json()
        both = c.get("/api/compare", params=[("path", "a"), ("path", "b")]).json()
    assert d["job"] == {"job": "job-7", "kind": "run", "stage": "train"}
    assert d["summary"]["status"] == "running"
    assert other["job"] is None and other["summary"]["status"] == "done"
    assert [r["status"] for r in both["runs"]] == ["running", "done"]


def test_train_continual_and_curate_folders_have_their_own_pages(studio_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    train = studio_root / "a" / "train"
    shutil.copytree(train, runs / "t", ignore=shutil.ignore_patterns("checkpoints"))
    (runs / "cl" / "round-0" / "train").mkdir(parents=True)
    shutil.copy(train / "metrics.jsonl", runs / "cl" / "round-0" / "train" / "metrics.jsonl")
    (runs / "cl" / "continual.yaml").write_text(
        yaml.safe_dump({"name": "cl", "tasks": [{"name": "x"}, {"name": "y"}]})
    )
    ledger = {"round-base": {"inputs": "h0", "seconds": 1.5, "finished": 1.0},
              "round-0": {"inputs": "h1", "seconds": 2.5, "finished": 2.0}}  # fmt: skip
    (runs / "cl" / "stages.json").write_text(json.dumps(ledger))
    shutil.copytree(studio_root / "curated", runs / "curated")
    with client(runs) as c:
        t = c.get("/api/run", params={"path": "t"}).json()
        cl = c.get("/api/run", params={"path": "cl"}).json()
        cu = c.get("/api/run", params={"path": "curated"}).json()
    done = json.loads((train / "train_metrics.json").read_text())
    assert t["kind"] == "train" and t["stages"][0]["status"] == "done"
    assert t["stages"][0]["seconds"] == done["train_seconds"]
    assert {c["metric"]: c["points"] for c in t["curves"]}["loss"] == logged(train / "metrics.jsonl", "loss")
    assert t["config"]["text"] == (train / "config.yaml").read_text() and t["predictions"] is None
    assert [(s["name"], s["status"], s["seconds"]) for s in cl["stages"]] == [
        ("round-base", "done", 1.5), ("round-0", "done", 2.5), ("round-1", "todo", None)
    ]  # fmt: skip
    assert [c["name"] for c in cl["curves"]] == ["round-0 train loss", "round-0 eval loss"]
    card = json.loads((studio_root / "curated" / "card.json").read_text())
    assert cu["kind"] == "curate" and cu["card"]["accounting"] == card["accounting"]
    assert (
        cu["card"]["rejected_by_reason"]
        == card["rejected_by_reason"]
        == {"empty_content": 2, "exact_duplicate": 1}
    )
    assert [s["kept"] for s in cu["card"]["steps"]] == [s["kept"] for s in card["steps"]]
    assert yaml.safe_load(cu["config"]["text"]) == card["config"]
