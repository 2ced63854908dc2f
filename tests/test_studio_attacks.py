"""The studio against a careless or hostile user: paths that cannot be opened (too long, a loop of symlinks),
damaged files in run folders, symlinks inside a run folder, job configs naming files outside ``--runs`` or
the studio's own folder, malformed bodies, every API route behind the key, and data kept out of markup.
Every answer is the studio's error shape with a 4xx, never a 500; no model is loaded and no job starts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from instructkit.studio.app import STATIC, build_app
from instructkit.studio.config import StudioConfig


def client(root: Path, **kw: Any) -> TestClient:
    return TestClient(build_app(StudioConfig(runs=str(root), **kw)), raise_server_exceptions=False)


def refused(r: Any, *statuses: int) -> dict[str, Any]:
    """The error of a refused request: one of ``statuses`` (any 4xx when none), in the studio's shape."""
    assert 400 <= r.status_code < 500 and (not statuses or r.status_code in statuses), (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "field", "code"} and "Traceback" not in err["message"]
    return err


def card(**changes: Any) -> dict[str, Any]:
    out = {
        "generator": "self-instruct",
        "accounting": {"in": 3, "kept": 2, "rejected": 1, "balanced": True},
        "steps": [{"step": "parse", "in": 3, "kept": 2, "dropped": {"bad": 1}}],
        "rejected_by_reason": {"bad": 1},
        "summary": {"records": 2, "unit": "record"},
        "files": {"records": "records.jsonl", "rejects": "rejects.jsonl"},
    }
    out.update(changes)
    return out


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


RECORD = json.dumps(
    {"id": "r1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
)


def recipe_run(folder: Path) -> Path:
    write(folder / "recipe.yaml", "name: r\ninputs: [x.jsonl]\ntrain: {model: m}\n")
    write(folder / "stages.json", json.dumps({"data": {"seconds": 1.0}, "before": {"seconds": 2.0}}))
    write(folder / "eval" / "before.json", json.dumps({"metrics": {"rouge1": 0.2}}))
    write(folder / "eval" / "after.json", json.dumps({"metrics": {"rouge1": 0.3}}))
    write(folder / "train" / "metrics.jsonl", '{"step": 1, "loss": 2.0}\n')
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A runs folder with one good recipe run and one good generated set, and a secret beside it."""
    root = tmp_path / "runs"
    recipe_run(root / "good")
    write(root / "gen" / "card.json", json.dumps(card()))
    write(root / "gen" / "records.jsonl", RECORD + "\n")
    write(
        root / "gen" / "rejects.jsonl", json.dumps({"step": "parse", "reason": "bad", "detail": "x"}) + "\n"
    )
    write(tmp_path / "secret.txt", "TOP SECRET\n")
    (root / "loop").symlink_to(root / "loop")  # a symlink to itself: resolving it never ends
    return root


# ------------------------------------------------------------------------------- paths that cannot be opened
@pytest.mark.parametrize("bad", ["a" * 5000, "x/" * 3000, "loop", "loop/x"])
def test_a_path_too_long_or_through_a_symlink_loop_is_refused_not_a_500(runs: Path, bad: str) -> None:
    one = [{"role": "user", "content": "hi"}]
    with client(runs) as c:
        answers = [
            c.get("/api/file", params={"path": bad}),
            c.get("/api/run", params={"path": bad}),
            c.get("/api/data/card", params={"path": bad}),
            c.get("/api/forms/run", params={"from": bad}),
            c.get("/api/data/mask", params={"path": "gen", "split": "records", "index": 0, "model": bad}),
            c.post("/api/chat", json={"path": bad, "messages": one}),
            c.post("/api/export", json={"path": "good", "out": bad}),
            c.post("/api/jobs", json={"kind": "generate", "generator": "self-instruct", "output": bad}),
            c.post("/api/jobs", json={"kind": "train", "config": {"output_dir": bad, "name": "x"}}),
        ]
    for r in answers:
        refused(r)
    assert not (runs / ".studio" / "jobs").exists()


# ------------------------------------------------------------------------------------------- damaged files
def damaged_runs(root: Path) -> None:
    write(recipe_run(root / "before-list") / "eval" / "before.json", "[1, 2]")
    write(recipe_run(root / "metrics-list") / "eval" / "after.json", '{"metrics": [1, 2]}')
    write(recipe_run(root / "seconds-text") / "stages.json", '{"data": {"seconds": "abc"}, "before": 5}')
    write(recipe_run(root / "truncated") / "stages.json", '{"data": {"seconds": 1')
    write(
        recipe_run(root / "garbage-log") / "train" / "metrics.jsonl",
        'garbage\n[1]\n{"step": "x", "loss": 1}\n',
    )
    write(recipe_run(root / "binary-report") / "report.html", bytes(range(256)) * 8)
    write(recipe_run(root / "recipe-list") / "recipe.yaml", "- a\n- b\n")
    preds = recipe_run(root / "predictions")
    write(
        preds / "eval" / "before.predictions.jsonl",
        '{"id": "1", "prediction": "a"}\n{"id": "2", "prediction": "b"}\n',
    )
    write(preds / "eval" / "after.predictions.jsonl", '{"id": [1], "prediction": "c"}\ngarbage\n"text"\n')
    write(root / "continual" / "continual.yaml", "tasks: 5\n")
    write(root / "continual" / "stages.json", '{"round-base": {"seconds": [1]}}')
    write(root / "continual" / "matrix.json", '{"summary": [1, 2]}')
    write(root / "continual" / "report.md", "done\n")
    write(root / "train" / "config.yaml", "[1\n")
    write(root / "train" / "metrics.jsonl", "\x00\xff\n")
    write(root / "train" / "train_metrics.json", '{"train_seconds": "abc", "val_loss": "x"}')
    (root / "train" / "model").mkdir()
    write(root / "card-list" / "card.json", json.dumps(card(accounting=[1], summary=[1])))
    write(root / "card-junk" / "card.json", json.dumps(card(steps=[1, "x", None], rejected_by_reason=[1],
                                                            sources=[1], files=[1], splits=[1])))  # fmt: skip
    write(
        root / "card-text" / "card.json",
        json.dumps(card(accounting={"in": "x", "kept": [1], "rejected": None})),
    )
    write(root / "rejects-junk" / "card.json", json.dumps(card()))
    write(root / "rejects-junk" / "records.jsonl", b"garbage\n\xff\xfe\n" + RECORD.encode() + b"\n")
    write(
        root / "rejects-junk" / "rejects.jsonl",
        'garbage\n{"id": [1], "detail": 5, "reason": "exact_duplicate", "record": "abc"}\n'
        '{"reason": "contaminated", "detail": ["x"]}\n{"record": {"messages": [1, {"role": [1]}]}}\n',
    )


def test_one_damaged_run_folder_never_fails_the_listing_and_each_page_answers_in_the_error_shape(
    runs: Path,
) -> None:
    damaged_runs(runs)
    with client(runs) as c:
        listing = c.get("/api/runs")
        assert listing.status_code == 200, listing.text
        rows = {r["path"]: r for r in listing.json()["runs"]}
        assert rows["good"]["status"] == "incomplete" and rows["recipe-list"]["status"] == "damaged"
        assert rows["seconds-text"]["seconds"] == 0
        for path in rows:
            r = c.get("/api/run", params={"path": path})
            assert r.status_code == 200 or refused(r, 422)["code"] == "damaged", (path, r.text)
        r = c.get("/api/compare", params={"path": ["before-list", "continual", "train", "card-list"]})
        assert r.status_code == 200 or refused(r, 422)
        data = c.get("/api/data")
        assert data.status_code == 200, data.text
        folders = {f["path"] for f in data.json()["folders"]}
        assert {"gen", "card-text", "card-junk", "rejects-junk"} <= folders
        for path in folders:
            for url in ("/api/data/card", "/api/data/rejects", "/api/data/clusters", "/api/data/histograms"):
                r = c.get(url, params={"path": path})
                assert r.status_code == 200 or refused(r, 422)["code"] == "damaged", (url, path, r.text)
        rejects = c.get("/api/data/rejects", params={"path": "rejects-junk"})
    assert rejects.status_code == 200 and rejects.json()["total"] == 3  # a detail that is no string: no match


def test_a_symlink_inside_a_run_folder_is_not_followed_out_of_the_runs_folder(runs: Path) -> None:
    secret = runs.parent / "secret.txt"
    train = runs / "leaky"
    write(train / "metrics.jsonl", '{"step": 1, "loss": 1.0}\n')
    (train / "config.yaml").symlink_to(secret)  # the config the run page prints
    gen = runs / "leaky-gen"
    write(gen / "card.json", json.dumps(card()))
    write(secret.parent / "records.jsonl", json.dumps({"id": "s", "text": "TOP SECRET"}) + "\n")
    (gen / "records.jsonl").symlink_to(secret.parent / "records.jsonl")
    (gen / "rejects.jsonl").symlink_to(secret)
    with client(runs) as c:
        page = c.get("/api/run", params={"path": "leaky"})
        hist = c.get("/api/data/histograms", params={"path": "leaky-gen"})
        rejects = c.get("/api/data/rejects", params={"path": "leaky-gen"})
        mask = c.get(
            "/api/data/mask", params={"path": "leaky-gen", "split": "records", "index": 0, "model": "x"}
        )
    assert page.status_code == 200 and page.json()["config"]["text"] is None
    assert hist.status_code == 200 and hist.json()["splits"]["records"]["records"] == 0
    assert rejects.status_code == 200 and rejects.json()["total"] == 0
    refused(mask, 400)
    for r in (page, hist, rejects, mask):
        assert "TOP SECRET" not in r.text


# ------------------------------------------------------------------------------------------------- jobs
def recipe(**changes: Any) -> dict[str, Any]:
    out = {
        "name": "x",
        "output_dir": ".",
        "inputs": ["inputs/data.jsonl"],
        "train": {"model": "inputs/model"},
    }
    out.update(changes)
    return out


@pytest.fixture
def job_runs(runs: Path) -> Path:
    write(runs / "inputs" / "data.jsonl", '{"prompt": "a", "completion": "b"}\n')
    (runs / "inputs" / "link.jsonl").symlink_to(runs.parent / "secret.txt")
    write(runs / "inputs" / "train.yaml", f"model: m\ndata:\n  train: {runs.parent / 'secret.txt'}\n")
    write(runs / "inputs" / "train2.yaml", "model: m\ndata:\n  train: ../../secret.txt\n")
    return runs


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "run", "config": recipe(inputs=["SECRET"])}, "inputs[0]"),
        ({"kind": "run", "config": recipe(inputs=["../secret.txt"])}, "inputs[0]"),
        ({"kind": "run", "config": recipe(inputs=["inputs/../../secret.txt"])}, "inputs[0]"),
        ({"kind": "run", "config": recipe(inputs=["inputs/link.jsonl"])}, "inputs[0]"),
        ({"kind": "run", "config": recipe(inputs="[SECRET]"), "yaml": ["inputs"]}, "inputs[0]"),
        ({"kind": "run", "config": recipe(held_out="SECRET")}, "held_out"),
        ({"kind": "run", "config": recipe(train={"model": "OUTSIDE"})}, "train.model"),
        ({"kind": "run", "config": recipe(train="inputs/train.yaml")}, "train"),
        ({"kind": "run", "config": recipe(train="inputs/train2.yaml")}, "train"),
        ({"kind": "train", "config": {"model": "m", "data": {"train": "SECRET"}}}, "data.train"),
        ({"kind": "continual", "config": {"tasks": [{"name": "t", "train": "SECRET"}]}}, "tasks[0].train"),
        (
            {"kind": "generate", "generator": "self-instruct", "output": "g", "config": {"seeds": "SECRET"}},
            "seeds",
        ),
    ],
)
def test_a_job_config_naming_a_file_outside_runs_is_refused_and_nothing_starts(
    job_runs: Path, body: dict[str, Any], field: str
) -> None:
    text = json.dumps(body).replace("SECRET", str(job_runs.parent / "secret.txt"))
    text = text.replace("OUTSIDE", str(job_runs.parent))
    with client(job_runs) as c:
        r = c.post("/api/jobs", json=json.loads(text))
    err = refused(r, 403)
    assert (err["field"], err["code"]) == (field, "path_refused")
    assert not (job_runs / ".studio" / "jobs").exists()


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "run", "config": recipe(name=".studio")},
        {"kind": "run", "config": recipe(output_dir=".studio", name="jobs")},
        {"kind": "train", "config": {"model": "m", "output_dir": "RUNS/.studio", "name": "x"}},
        {"kind": "generate", "generator": "self-instruct", "output": ".studio/x", "config": {}},
    ],
)
def test_a_job_cannot_make_the_studios_own_folder_its_run_folder(
    job_runs: Path, body: dict[str, Any]
) -> None:
    body = json.loads(json.dumps(body).replace("RUNS", str(job_runs)))
    with client(job_runs) as c:
        r = c.post("/api/jobs", json=body)
    assert refused(r, 403)["code"] == "path_refused"
    assert not (job_runs / ".studio").exists()


def test_a_body_that_is_not_json_is_a_400_naming_no_field(runs: Path) -> None:
    with client(runs) as c:
        for url in ("/api/jobs", "/api/chat", "/api/export"):
            r = c.post(url, content=b"{not json", headers={"content-type": "application/json"})
            err = refused(r, 400)
            assert err["field"] is None and "not valid JSON" in err["message"]


# ------------------------------------------------------------------------------------------------- auth
def test_every_api_route_refuses_a_request_without_the_key(runs: Path) -> None:
    app = build_app(StudioConfig(runs=str(runs), api_key="k3y"))
    flat = []  # an included router is one entry in newer FastAPI (its routes under original_router)
    for route in app.routes:
        flat += getattr(getattr(route, "original_router", None), "routes", None) or [route]
    routes = [
        (method, route.path)
        for route in flat
        if getattr(route, "path", "").startswith("/api/")
        for method in sorted(getattr(route, "methods", None) or ())
    ]
    assert (
        len(routes) >= 20
        and ("POST", "/api/chat") in routes
        and ("GET", "/api/jobs/{job_id}/events") in routes
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        for method, path in routes:
            url = path.replace("{kind}", "run").replace("{generator}", "evol").replace("{job_id}", "x")
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "k3y"}):
                r = c.request(method, url, headers=headers, json={})
                assert refused(r, 401)["code"] == "invalid_api_key", (method, url, headers)
        assert c.get("/").status_code == 200 and c.get("/static/studio.js").status_code == 200
        assert c.get("/api/info", headers={"Authorization": "Bearer k3y"}).status_code == 200


# -------------------------------------------------------------------------------------------------- XSS
def test_the_pages_put_data_in_text_and_the_report_in_a_sandbox_without_scripts() -> None:
    scripts = {
        p.name: p.read_text() for p in [STATIC / "studio.js", *sorted((STATIC / "pages").glob("*.js"))]
    }
    assert len(scripts) >= 5
    for name, text in scripts.items():
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert sink not in text, (name, sink)
    # studio.el sets text with textContent and children as text nodes, never as markup
    assert 'k === "text") n.textContent = v' in scripts["studio.js"]
    assert "c instanceof Node ? c : String(c)" in scripts["studio.js"]
    frames = re.findall(r'el\("iframe", \{[^}]*\}', scripts["runs.js"])
    assert frames and all('sandbox: ""' in f and "allow-" not in f for f in frames), frames


def test_exporting_into_the_studios_own_folder_is_refused(runs: Path) -> None:
    write(
        runs / "trained" / "model" / "instructkit.json", json.dumps({"task": "causal-lm", "base_model": "m"})
    )
    write(runs / "trained" / "config.yaml", "model: m\n")
    with client(runs) as c:
        r = c.post("/api/export", json={"path": "trained", "out": ".studio/x"})
    assert refused(r, 403)["field"] == "out"
    assert not (runs / ".studio").exists()


def test_cancelling_a_job_twice_signals_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second SIGINT would cut short the first's orderly stop (a checkpoint being written)."""
    import sys
    import time

    from instructkit.studio import jobs
    from instructkit.studio.paths import RunsRoot

    signals = tmp_path / "runs" / "signals.txt"
    script = (
        "import signal, sys, time\n"
        f"def on(*a): open({str(signals)!r}, 'a').write('INT\\n')\n"
        "signal.signal(signal.SIGINT, on)\n"
        "open(sys.argv[1], 'w').close()\n"
        "time.sleep(2)\n"
        "time.sleep(1)\n"  # an orderly stop takes a while: a second SIGINT would land in it
        "sys.exit(130)\n"
    )
    ready = tmp_path / "runs" / "ready"
    monkeypatch.setattr(jobs, "command", lambda *a, **k: [sys.executable, "-c", script, str(ready)])
    (tmp_path / "runs").mkdir()
    manager = jobs.JobManager(RunsRoot(tmp_path / "runs"))
    job = manager.start("train", {"name": "x"}, "x")
    try:
        for _ in range(100):
            if ready.exists():
                break
            time.sleep(0.05)
        first = manager.cancel(job.id, grace=10)
        second = manager.cancel(job.id, grace=10)
        assert first is second and second.cancel_requested
        job.watcher.join(timeout=20)
    finally:
        manager.stop_all(grace=1)
    assert job.status == "cancelled"
    assert signals.read_text().splitlines() == ["INT"]


@pytest.mark.parametrize("name", ["../../secret.jsonl", "SECRET", "./../../secret.jsonl"])
def test_a_card_naming_a_split_file_outside_its_folder_is_not_read(runs: Path, name: str) -> None:
    secret = write(runs.parent / "secret.jsonl", RECORD.replace("hi", "TOP SECRET") + "\n")
    name = name.replace("SECRET", str(secret))
    write(runs / "sneaky" / "card.json", json.dumps(card(files={"records": name})))
    with client(runs) as c:
        hist = c.get("/api/data/histograms", params={"path": "sneaky"})
        mask = c.get(
            "/api/data/mask", params={"path": "sneaky", "split": "records", "index": 0, "model": "x"}
        )
    assert hist.status_code == 200 and hist.json()["splits"]["records"]["records"] == 0
    refused(mask, 400)
    assert "TOP SECRET" not in hist.text + mask.text


@pytest.mark.parametrize("yaml_text", [False, True])
def test_a_config_nested_past_any_schema_is_a_400_not_a_recursion_error(runs: Path, yaml_text: bool) -> None:
    deep = "[" * 900 + "]" * 900
    config = f'{{"inputs": "{deep}"}}' if yaml_text else f'{{"inputs": {deep}}}'
    body = f'{{"kind": "run", "config": {config}, "yaml": ["inputs"]}}'
    with client(runs) as c:
        r = c.post("/api/jobs", content=body.encode(), headers={"content-type": "application/json"})
    assert refused(r, 400)["field"].startswith("inputs")
    assert not (runs / ".studio" / "jobs").exists()


def test_a_run_whose_model_folder_is_a_symlink_out_of_runs_is_not_loaded_exported_or_tokenized(
    runs: Path,
) -> None:
    outside = runs.parent / "elsewhere"
    write(outside / "instructkit.json", json.dumps({"task": "causal-lm", "base_model": "m", "method": {}}))
    write(runs / "linked" / "config.yaml", "model: m\n")
    (runs / "linked" / "model").symlink_to(outside)
    one = [{"role": "user", "content": "hi"}]
    mask = {"path": "gen", "split": "records", "index": 0, "model": "linked"}
    with client(runs) as c:
        chat = c.post("/api/chat", json={"path": "linked", "messages": one})
        export = c.post("/api/export", json={"path": "linked", "out": "exported"})
        tokens = c.get("/api/data/mask", params=mask)
    for r in (chat, export, tokens):
        assert refused(r, 403)["code"] == "path_refused"
    assert not (runs / "exported").exists()


def test_a_damaged_job_json_of_an_earlier_session_is_left_out(runs: Path) -> None:
    def job(**changes: Any) -> str:
        out = {
            "id": "ok",
            "kind": "run",
            "run": "x",
            "argv": [],
            "plan": [],
            "started": 5.0,
            "status": "done",
        }
        return json.dumps({**out, **changes})

    write(runs / ".studio" / "jobs" / "ok" / "job.json", job())
    write(runs / ".studio" / "jobs" / "when" / "job.json", job(id="when", started="yesterday"))
    write(runs / ".studio" / "jobs" / "types" / "job.json", job(id=5, kind=["run"], argv="abc", plan=7))
    write(runs / ".studio" / "jobs" / "far" / "job.json", job(id="far", run="../../etc"))
    write(runs / ".studio" / "jobs" / "other" / "job.json", job(id="ok2"))
    with client(runs) as c:
        listing = c.get("/api/jobs")
        answers = [c.get(f"/api/jobs/{j}") for j in ("when", "types", "far", "5", "ok2")]
        ok = c.get("/api/jobs/ok")
    assert listing.status_code == 200 and [j["id"] for j in listing.json()["jobs"]] == ["ok"]
    assert ok.status_code == 200 and ok.json()["status"] == "done"
    for r in answers:
        assert refused(r, 404)["code"] == "not_found"


def test_a_yaml_field_of_aliases_expanding_to_a_huge_config_is_a_400(runs: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10**9 leaves
    body = {"kind": "run", "config": {"train": "\n".join(lines)}, "yaml": ["train"]}
    with client(runs) as c:
        r = c.post("/api/jobs", json=body)
    assert "more than" in refused(r, 400)["message"]
    assert not (runs / ".studio" / "jobs").exists()


def test_a_yaml_file_under_runs_expanding_to_a_huge_document_is_refused_as_a_form_source_and_a_train_file(
    runs: Path,
) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    write(runs / "inputs" / "bomb.yaml", "\n".join(lines) + "\n")
    with client(runs) as c:
        form = c.get("/api/forms/train", params={"from": "inputs/bomb.yaml"})
        job = c.post("/api/jobs", json={"kind": "run", "config": recipe(train="inputs/bomb.yaml")})
    assert refused(form, 400)["field"] == "from"
    assert refused(job, 400)["field"] == "train"
    assert not (runs / ".studio" / "jobs").exists()
