"""The studio's jobs API: forms from the config schemas, a config checked by the CLI's own loaders (the same
message, the dotted key, nothing started or written), run folders only under --runs, the job limit; and
(slow) a run job followed over server-sent events to its end, and a training job cancelled mid-training
with the job page's Cancel button in Chromium, which the CLI resumes to the weights of an uninterrupted run."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from instructkit.config import ConfigError, field_docs, load
from instructkit.studio.app import build_app
from instructkit.studio.config import StudioConfig


def client(root: Path, **kw: Any) -> TestClient:
    return TestClient(build_app(StudioConfig(runs=str(root), **kw)))


def node(fields: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for n in fields:
        if n["name"] == name:
            return n
        if n.get("section") and name.startswith(n["name"] + "."):
            return node(n["fields"], name)
    raise KeyError(name)


def names(fields: list[dict[str, Any]]) -> set[str]:
    out = set()
    for n in fields:
        out |= names(n["fields"]) if n.get("section") else {n["name"]}
    return out


@pytest.fixture
def runs(studio_root: Path, tmp_path: Path) -> Path:
    """A copy of the studio's runs folder (the jobs API writes under it)."""
    out = tmp_path / "runs"
    shutil.copytree(studio_root, out)
    return out


def recipe_a(runs: Path, **changes: Any) -> dict[str, Any]:
    data = yaml.safe_load((runs / "inputs" / "a.yaml").read_text())
    data.update(changes)
    return data


def nothing_started(runs: Path, before: set[str]) -> None:
    assert not (runs / ".studio" / "jobs").exists() or not any((runs / ".studio" / "jobs").iterdir())
    assert {p.name for p in runs.iterdir()} == before


# ------------------------------------------------------------------------------------------------ forms
def test_the_run_form_has_the_recipes_fields_with_their_docs(studio_root: Path) -> None:
    from instructkit.recipe.schema import EvalSettings, Recipe
    from instructkit.train.config import OptimConfig

    with client(studio_root) as c:
        form = c.get("/api/forms/run").json()
        filled = c.get("/api/forms/run", params={"from": "inputs/a.yaml"}).json()
    lr = node(form["fields"], "train.optim.lr")
    default = next(f.default for f in dataclasses.fields(OptimConfig) if f.name == "lr")
    assert (lr["input"], lr["default"], lr["doc"]) == ("number", default, field_docs(OptimConfig)["lr"])
    assert lr["rules"] == "> 0, finite"
    split = node(form["fields"], "eval.split")
    assert split["input"] == "select" and split["choices"] == ["test", "val", "held-out"]
    assert split["doc"] == field_docs(EvalSettings)["split"]
    assert node(form["fields"], "name")["doc"] == field_docs(Recipe)["name"]
    assert node(form["fields"], "train.optim")["section"] is True
    assert node(form["fields"], "train.eval.load_best")["input"] == "checkbox"
    assert node(form["fields"], "inputs")["input"] == "yaml"
    # the recipe sets its train stage's folder and curated splits: not fields of its train section
    assert not {"train.name", "train.output_dir", "train.data.train", "train.data.val"} & names(
        form["fields"]
    )
    assert "inputs/a.yaml" in form["sources"] and "inputs/b.yaml" in form["sources"]
    assert filled["values"]["train"]["optim"]["lr"] == 5e-3 and filled["values"]["name"] == "a"


def test_the_other_kinds_forms(studio_root: Path) -> None:
    from instructkit.continual.recipe import FIXED_TRAIN_KEYS
    from instructkit.generate.runner import generator_class
    from instructkit.train.config import TrainConfig

    with client(studio_root) as c:
        train = c.get("/api/forms/train").json()
        continual = c.get("/api/forms/continual").json()
        gen = c.get("/api/forms/generate", params={"generator": "self-instruct"}).json()
        assert c.get("/api/forms/generate/self-instruct").json()["fields"] == gen["fields"]
        assert c.get("/api/forms/generate/nope").status_code == 400
        assert c.get("/api/forms/nope").status_code == 404
        refused = c.get("/api/forms/run", params={"from": "../outside.yaml"})
    assert {"name", "output_dir", "data.train", "optim.lr", "method"} <= names(train["fields"])
    assert node(train["fields"], "model")["default"] == TrainConfig().model
    assert "tasks" in names(continual["fields"]) and "train.optim.lr" in names(continual["fields"])
    assert not {f"train.{k}" for k in FIXED_TRAIN_KEYS} & names(continual["fields"])
    own = {f.name for f in dataclasses.fields(generator_class("self-instruct").config) if f.init}
    assert {n["name"] for n in gen["fields"]} == own and "self-instruct" in gen["generators"]
    assert refused.status_code == 403 and refused.json()["error"]["field"] == "from"


def test_a_recipe_naming_a_train_file_prefills_that_files_values(runs: Path) -> None:
    data = recipe_a(runs, name="split")
    (runs / "inputs" / "t.yaml").write_text(yaml.safe_dump(data.pop("train")))
    (runs / "inputs" / "r.yaml").write_text(yaml.safe_dump(dict(data, train="t.yaml")))  # beside the recipe
    (runs / "inputs" / "far.yaml").write_text(yaml.safe_dump(dict(data, train="/etc/t.yaml")))
    with client(runs) as c:
        near = c.get("/api/forms/run", params={"from": "inputs/r.yaml"}).json()["values"]
        far = c.get("/api/forms/run", params={"from": "inputs/far.yaml"}).json()["values"]
    assert near["train"]["optim"]["lr"] == 5e-3 and near["train"]["method"]["name"] == "lora"
    assert far["train"] == "/etc/t.yaml"  # not read: outside the runs folder


def test_unknown_jobs_and_cancelling_an_ended_one(runs: Path) -> None:
    from instructkit.studio.api.jobs import manager
    from instructkit.studio.jobs import Job

    app = build_app(StudioConfig(runs=str(runs)))
    manager(app.state.studio).jobs["old"] = Job(
        "old", "train", "t", [], ["train"], time.time(), status="failed"
    )
    with TestClient(app) as c:
        assert c.get("/api/jobs/nope").status_code == 404
        assert c.get("/api/jobs/nope/events").status_code == 404
        r = c.post("/api/jobs/old/cancel")
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_running"
        assert [j["id"] for j in c.get("/api/jobs").json()["jobs"]] == ["old"]


# --------------------------------------------------------------------------------------- config errors
def _loader_error(runs: Path, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> ConfigError:
    """What ``instructkit run`` raises for ``data`` (its load, then check_recipe), in the runs folder."""
    from instructkit.recipe.plan import check_recipe
    from instructkit.recipe.schema import Recipe, RecipeError

    monkeypatch.chdir(runs)
    try:
        check_recipe(load(Recipe, copy.deepcopy(data), error=RecipeError))
    except ConfigError as e:
        return e
    raise AssertionError("the loader accepted it")


@pytest.mark.parametrize(
    "change,field",
    [
        (lambda d: d["train"]["optim"].update(lr="fast"), "train.optim.lr"),  # a wrong type
        (lambda d: d.update(bogus=1), "bogus"),  # an unknown key
        (lambda d: d["train"]["optim"].update(lrr=1e-3), "train.optim.lrr"),  # an unknown nested key
        (lambda d: d["eval"].update(split="dev"), "eval.split"),  # not one of the choices
        (lambda d: d["train"]["method"].update(r=0), "train.method.r"),  # a method parameter out of range
    ],
    ids=["wrong-type", "unknown-key", "unknown-nested-key", "not-a-choice", "method-range"],
)
def test_a_config_error_is_the_loaders_message_and_nothing_starts(
    runs: Path, change: Any, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = recipe_a(runs, name="new")
    change(data)
    before = {p.name for p in runs.iterdir()}
    with client(runs) as c:
        r = c.post("/api/jobs", json={"kind": "run", "config": data})
        listed = c.get("/api/jobs").json()["jobs"]
    expected = _loader_error(runs, data, monkeypatch)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] == str(expected)
    assert r.json()["error"]["field"] == expected.key == field
    assert listed == []
    nothing_started(runs, before)


def test_a_train_config_error_is_train_configs_message(runs: Path) -> None:
    from instructkit.train.config import TrainConfig

    data = {"model": "inputs/model", "data": {"train": "inputs/data.jsonl"}, "optim": {"batch_size": "many"}}
    with pytest.raises(ConfigError) as expected:
        TrainConfig.from_dict(copy.deepcopy(data))
    with client(runs) as c:
        r = c.post("/api/jobs", json={"kind": "train", "config": data})
    assert r.status_code == 400
    assert r.json()["error"] == {
        "message": str(expected.value),
        "field": "optim.batch_size",
        "code": "invalid_config",
    }
    assert not (runs / ".studio").exists()


def test_a_form_text_field_is_read_as_yaml_and_bad_yaml_names_its_key(runs: Path) -> None:
    data = recipe_a(runs, name="new", inputs="[inputs/data.jsonl")
    with client(runs) as c:
        r = c.post("/api/jobs", json={"kind": "run", "config": data, "yaml": ["inputs"]})
    assert r.status_code == 400 and r.json()["error"]["field"] == "inputs"
    assert "is not valid YAML" in r.json()["error"]["message"]
    assert not (runs / ".studio").exists()


@pytest.mark.parametrize("output_dir", ["/tmp/elsewhere", "..", "../../x", "inputs/../.."])
def test_a_run_folder_outside_runs_is_refused(runs: Path, output_dir: str) -> None:
    before = {p.name for p in runs.iterdir()}
    with client(runs) as c:
        r = c.post(
            "/api/jobs", json={"kind": "run", "config": recipe_a(runs, name="far", output_dir=output_dir)}
        )
    assert r.status_code == 403, r.text
    assert r.json()["error"]["field"] == "output_dir" and "output_dir" in r.json()["error"]["message"]
    nothing_started(runs, before)
    assert not Path("/tmp/elsewhere/far").exists()


def test_a_generate_output_outside_runs_is_refused(runs: Path) -> None:
    with client(runs) as c:
        r = c.post(
            "/api/jobs",
            json={"kind": "generate", "generator": "self-instruct", "output": "../gen", "config": {}},
        )
    assert r.status_code == 403 and r.json()["error"]["field"] == "output"
    assert not (runs / ".studio").exists()


def test_too_many_jobs_are_refused_and_one_run_folder_holds_one_job(runs: Path) -> None:
    from instructkit.studio.api.jobs import manager
    from instructkit.studio.jobs import Job

    app = build_app(StudioConfig(runs=str(runs), max_jobs=2))
    jobs = manager(app.state.studio)
    plan = ["data", "before", "train", "after", "report"]
    jobs.jobs["j1"] = Job("j1", "run", "busy", [], plan, time.time())  # running, as far as the studio knows
    with TestClient(app) as c:
        same = c.post("/api/jobs", json={"kind": "run", "config": recipe_a(runs, name="busy")})
        jobs.jobs["j2"] = Job("j2", "train", "other", [], ["train"], time.time())
        over = c.post("/api/jobs", json={"kind": "run", "config": recipe_a(runs, name="third")})
        running = app.state.studio.running()
    assert same.status_code == 409 and same.json()["error"]["field"] == "output_dir"
    assert over.status_code == 429 and over.json()["error"]["code"] == "too_many_jobs"
    assert running == {
        "busy": {"job": "j1", "kind": "run", "stage": None},
        "other": {"job": "j2", "kind": "train", "stage": "train"},
    }
    assert not (runs / "busy").exists() and not (runs / "third").exists()
    assert not (runs / ".studio").exists()


# ---------------------------------------------------------------------------------- real jobs (slow)
def follow(c: TestClient, job_id: str, on_event: Any = None) -> list[dict[str, Any]]:
    """Every event of the job's stream, until its ``end`` event."""
    seen = []
    with c.stream("GET", f"/api/jobs/{job_id}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                event = dict(json.loads(line[5:]), event=kind)
                seen.append(event)
                if on_event is not None:
                    on_event(event)
    return seen


STEPS = 16
"""Training steps of the slow tests' runs: enough that a cancel sent at step 3 lands before the end."""


def long_recipe(runs: Path, name: str) -> dict[str, Any]:
    data = recipe_a(runs, name=name)
    data["train"]["optim"]["max_steps"] = STEPS  # checkpoints every step (save_every_steps: 1)
    return data


def _progress(url: str, job_id: str) -> dict[str, Any]:
    import urllib.request

    return json.loads(urllib.request.urlopen(f"{url}/api/jobs/{job_id}", timeout=60).read())


def _wait_for(ok: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _held_at_step(url: str, job_id: str, runs: Path, step: int) -> int:
    """Stop the job's process group (SIGSTOP) once its training is at ``step``; returns the group."""
    _wait_for(
        lambda: _progress(url, job_id)["stage"] == "train" and (_progress(url, job_id)["step"] or 0) >= step,
        300,
    )
    config = f".studio/jobs/{job_id}/config.yaml".encode()
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).endswith(config)]
    assert len(pids) == 1, pids
    group = os.getpgid(pids[0])
    os.killpg(group, signal.SIGSTOP)
    progress = _progress(url, job_id)
    assert progress["stage"] == "train" and progress["step"] < STEPS - 4, progress
    return group


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes().rstrip(b"\0")
    except OSError:
        return b""


def weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(folder / "train" / "model" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def finished(
    studio_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """A copy of the runs folder where a studio job ran ``long_recipe`` (run ``full``) to its end, and the
    job's events."""
    runs = tmp_path_factory.mktemp("jobs") / "runs"
    shutil.copytree(studio_root, runs)
    with client(runs) as c:
        r = c.post("/api/jobs", json={"kind": "run", "config": long_recipe(runs, "full")})
        assert r.status_code == 200, r.text
        events = follow(c, r.json()["id"])
    yield runs, events


@pytest.mark.slow
def test_a_run_job_streams_its_progress_to_the_end(finished: tuple[Path, list[dict[str, Any]]]) -> None:
    runs, events = finished
    last = events[-1]
    assert last["event"] == "end" and last["status"] == "done" and last["returncode"] == 0, last.get(
        "log_tail"
    )
    assert all(e["event"] == "progress" and e["status"] == "running" for e in events[:-1])
    assert [s["state"] for s in last["stages"]] == ["done"] * 5
    assert [s["name"] for s in last["stages"]] == ["data", "before", "train", "after", "report"]
    seen_stages = [e["stage"] for e in events if e["stage"]]
    assert "train" in seen_stages and seen_stages.index("train") < len(seen_stages) - 1
    assert (last["step"], last["total"]) == (STEPS, STEPS)
    assert any(e["stage"] == "train" and e["total"] == STEPS and 0 < (e["step"] or 0) < STEPS for e in events)
    metrics = [json.loads(x) for x in (runs / "full" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert last["loss"] == [[m["step"], m["loss"]] for m in metrics if "loss" in m]
    after = json.loads((runs / "full" / "eval" / "after.json").read_text())["metrics"]
    numbers = {k: v for k, v in after.items() if isinstance(v, int | float)}
    assert {k: v["after"] for k, v in last["metrics"].items()} == numbers and "perplexity" in numbers
    job = json.loads(next((runs / ".studio" / "jobs").glob("*/job.json")).read_text())
    assert job["status"] == "done" and job["run"] == "full"
    config = yaml.safe_load(next((runs / ".studio" / "jobs").glob("*/config.yaml")).read_text())
    assert config == long_recipe(runs, "full")


@pytest.mark.slow
@pytest.mark.requires_browser
def test_a_job_cancelled_in_the_browser_resumes_from_the_cli_to_the_uninterrupted_weights(
    finished: tuple[Path, list[dict[str, Any]]],
) -> None:
    """The job page's Cancel button, pressed in Chromium mid-training, stops the run as Ctrl-C would; the
    command the page prints resumes it from the terminal to the weights of the run that was never stopped."""
    import urllib.request

    from tests.studio_browser import studio_page, wait_ready

    runs, _ = finished
    with studio_page(runs) as (page, url):
        body = json.dumps({"kind": "run", "config": long_recipe(runs, "cut")}).encode()
        req = urllib.request.Request(url + "/api/jobs", body, {"Content-Type": "application/json"})
        job_id = json.loads(urllib.request.urlopen(req, timeout=60).read())["id"]
        # The job's 16 steps take about 2 s, less than Chromium may need to show the page on a busy machine, so
        # the job is held (SIGSTOP to its process group) once training is at step 3 (a checkpoint exists and
        # the end is far) and let go once the Cancel pressed in the page has been sent: the SIGINT waits for it.
        group = _held_at_step(url, job_id, runs, 3)
        try:
            page.goto(f"{url}/#/train?job={job_id}")
            wait_ready(page)
            page.wait_for_function(
                "() => { const m = /step (\\d+) \\//.exec(document.querySelector('#job-step').textContent);"
                " return m && +m[1] >= 3; }",
                timeout=300_000,
            )
            page.click("#job-cancel")
            page.wait_for_selector("#job-cancel[disabled]", state="attached", timeout=60_000)
            _wait_for(lambda: _progress(url, job_id)["cancel_requested"], 60)
        finally:
            os.killpg(group, signal.SIGCONT)
        page.wait_for_selector("#job-status[data-status=cancelled]", timeout=120_000)
        resume = page.inner_text("pre#job-resume-cmd").strip()
    job = json.loads((runs / ".studio" / "jobs" / job_id / "job.json").read_text())
    assert job["status"] == "cancelled", job
    checkpoints = sorted((runs / "cut" / "train" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and not (runs / "cut" / "train" / "model").exists(), "cancelled after training ended"
    # the CLI, run again as after a killed run: finished stages skipped, training from the newest checkpoint
    config = f".studio/jobs/{job_id}/config.yaml"
    assert resume.endswith(f"instructkit run {config}"), resume
    done = subprocess.run([sys.executable, "-m", "instructkit.cli", "run", config], cwd=runs,
                          capture_output=True, text=True, timeout=500)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "[data] up to date, skipped" in done.stdout and "[before] up to date, skipped" in done.stdout
    assert "[train] resuming from" in done.stdout and "checkpoint-" in done.stdout
    a, b = weights(runs / "cut"), weights(runs / "full")
    assert a.keys() == b.keys() and a
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6, f"resumed weights differ from the uninterrupted run's by {worst}"
