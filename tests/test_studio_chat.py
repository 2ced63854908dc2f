"""The studio's chat and export API: a greedy reply equals `instructkit chat`'s, runs side by side each
give their own, two runs stay loaded (the least recently used idle one dropped), limits and path safety;
an export reports the exporter's verification and writes only under the runs folder, one at a time."""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from instructkit.studio.app import build_app
from instructkit.studio.config import StudioConfig
from instructkit.studio.errors import StudioError

PROMPT = "What is 2 plus 5?"
N = 12


def client(root: Path) -> TestClient:
    return TestClient(build_app(StudioConfig(runs=str(root))))


def events(r: Any) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]


def chat(c: TestClient, path: str, prompt: str = PROMPT, **kw: Any) -> dict[str, Any]:
    body = {"path": path, "messages": [{"role": "user", "content": prompt}], "max_tokens": N, **kw}
    evs = events(c.post("/api/chat", json=body))
    done = evs[-1]
    assert done["done"] is True, evs
    assert "".join(e["delta"] for e in evs[:-1]) == done["text"]  # the deltas are the reply, streamed
    assert len(evs) > 2  # in pieces, as they were decoded
    return done


def cli_reply(runs: Path, run: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """`instructkit chat --model RUN/train --prompt PROMPT --max-new-tokens N`'s reply, run where the
    studio's jobs run (the recipe names its base model relative to the runs folder)."""
    from typer.testing import CliRunner

    from instructkit.cli import app

    model = str(runs / run / "train")
    with monkeypatch.context() as m:
        m.chdir(runs)
        result = CliRunner().invoke(
            app,
            ["chat", "--model", model, "--prompt", PROMPT, "--max-new-tokens", str(N)],
            env={"COLUMNS": "400"},
        )
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith(model + ":")]
    return line[len(model) + 1 :].strip()


def test_greedy_reply_equals_instructkit_chat(studio_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = cli_reply(studio_root, "a", monkeypatch)
    assert expected
    with client(studio_root) as c:  # from the test's own working directory: the studio finds the base
        done = chat(c, "a")
        again = chat(c, "a")
        assert c.get("/api/chat/models").json()["loaded"] == ["a"]
    assert done["text"].strip() == expected
    assert again["text"] == done["text"]
    assert done["finish_reason"] in ("length", "stop") and 0 < done["completion_tokens"] <= N


def test_a_conversation_continues_as_the_terminal_chat_does(
    studio_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from instructkit.decoding.engine.sampling import Sampling
    from instructkit.decoding.engine.scheduler import Engine
    from instructkit.serve.chat import ChatSession
    from instructkit.serve.loading import load_served

    system, second = "Answer in one word.", "And 3 plus 4?"
    with monkeypatch.context() as m:  # the terminal chat's session: system prompt, two turns, history
        m.chdir(studio_root)
        served = load_served(str(studio_root / "b" / "train"))
    engine = Engine(served.model, served.tokenizer, max_batch=1, activate=served.activate).start()
    try:
        session = ChatSession(served, engine, system=system, sampling=Sampling(N, 0.0))
        first_ref = "".join(session.send(PROMPT))
        second_ref = "".join(session.send(second))
    finally:
        engine.stop()
    messages = [{"role": "system", "content": system}, {"role": "user", "content": PROMPT}]
    with client(studio_root) as c:
        first = c.post("/api/chat", json={"path": "b", "messages": messages, "max_tokens": N})
        first_text = events(first)[-1]["text"]
        messages += [{"role": "assistant", "content": first_text}, {"role": "user", "content": second}]
        then = events(c.post("/api/chat", json={"path": "b", "messages": messages, "max_tokens": N}))[-1]
    assert (first_text, then["text"]) == (first_ref, second_ref)
    assert then["prompt_tokens"] > events(first)[-1]["prompt_tokens"]


def test_models_lists_the_trained_runs(studio_root: Path) -> None:
    with client(studio_root) as c:
        data = c.get("/api/chat/models").json()
    rows = {r["path"]: r for r in data["runs"]}
    assert set(rows) == {"a", "b"}  # curated has no model; inputs/model is a base, not a trained run
    assert rows["a"]["model"] == "a/train/model" and rows["a"]["method"] == "lora" and rows["a"]["chat"]
    assert data["loaded"] == [] and data["max_loaded"] == 4


def test_two_runs_side_by_side_each_give_their_own_reply(
    studio_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = {run: cli_reply(studio_root, run, monkeypatch) for run in ("a", "b")}
    with client(studio_root) as c, ThreadPoolExecutor(2) as pool:
        replies = dict(zip(("a", "b"), pool.map(lambda run: chat(c, run), ("a", "b")), strict=True))
        assert sorted(c.get("/api/chat/models").json()["loaded"]) == ["a", "b"]
        state = c.app.state.studio
        engines = [run.engine for run in state.chats._runs.values()]
    assert {run: r["text"].strip() for run, r in replies.items()} == expected
    assert all(e._thread is None for e in engines)  # the studio stopped every engine as it closed


def test_the_least_recently_used_idle_run_is_dropped(studio_root: Path) -> None:
    from instructkit.studio.chats import ChatModels

    chats = ChatModels(studio_root, capacity=1)
    try:
        a = chats.acquire(studio_root / "a")
        chats.release(a)
        b = chats.acquire(studio_root / "b")
        assert chats.loaded() == ["b"] and a.engine._thread is None and b.engine._thread is not None
        with pytest.raises(StudioError) as busy:  # b is between acquire and submit: not dropped for a
            chats.acquire(studio_root / "a")
        assert busy.value.status == 429
        chats.release(b)
    finally:
        chats.close()
    assert b.engine._thread is None and chats.loaded() == []


@pytest.mark.parametrize("path", ["../x", "/etc", "a/../../x", "a/\\..\\..", "a/\0"])
def test_paths_out_of_the_runs_folder_are_refused(studio_root: Path, path: str) -> None:
    with client(studio_root) as c:
        r = c.post("/api/chat", json={"path": path, "messages": [{"role": "user", "content": "hi"}]})
        e = c.post("/api/export", json={"path": path, "out": "exports/x"})
        o = c.post("/api/export", json={"path": "a", "out": path})
    for resp, field in ((r, "path"), (e, "path"), (o, "out")):
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["field"] == field and resp.json()["error"]["code"] == "path_refused"
    assert not (studio_root.parent / "x").exists()


def test_limits_and_runs_without_a_model_are_refused(studio_root: Path) -> None:
    hi = [{"role": "user", "content": "hi"}]
    cases = [
        ({"path": "a", "messages": hi, "max_tokens": 1025}, 400, "max_tokens"),
        ({"path": "a", "messages": hi, "max_tokens": 0}, 400, "max_tokens"),
        ({"path": "a", "messages": hi, "temperature": 3}, 400, "temperature"),
        ({"path": "a", "messages": hi * 65}, 400, "messages"),
        ({"path": "a", "messages": []}, 400, "messages"),
        ({"path": "a", "messages": [{"role": "tool", "content": "x"}]}, 400, "messages.0.role"),
        ({"path": "a", "messages": [{"role": "assistant", "content": "x"}]}, 400, "messages"),
        ({"path": "curated", "messages": hi}, 400, "path"),
        ({"path": "inputs", "messages": hi}, 400, "path"),
        ({"path": "nope", "messages": hi}, 404, "path"),
    ]
    with client(studio_root) as c:
        for body, status, field in cases:
            r = c.post("/api/chat", json=body)
            assert (r.status_code, r.json()["error"]["field"]) == (status, field), (body, r.text)
        assert c.get("/api/chat/models").json()["loaded"] == []  # nothing was loaded for a refused request
        r = c.post("/api/chat", json={"path": "curated", "messages": hi})
    assert "has no trained model" in r.json()["error"]["message"]


def test_export_reports_verified_and_writes_under_the_runs_folder(studio_root: Path, tmp_path: Path) -> None:
    from instructkit.models.manifest import verify_folder
    from instructkit.train.saved_model import is_trained_run

    runs = tmp_path / "runs"
    shutil.copytree(studio_root, runs)
    with client(runs) as c:
        r = c.post("/api/export", json={"path": "a", "format": "hf", "out": "exports/a-merged"})
        assert r.status_code == 200, r.text
        res = r.json()
        again = c.post(
            "/api/export", json={"path": "a", "out": "exports/a-merged"}
        )  # replaces its own export
    out = runs / "exports" / "a-merged"
    assert res["verified"] is True and res["path"] == "exports/a-merged" and res["merged"] is True
    assert 0 <= res["max_abs_diff"] <= res["tolerance"] == 1e-4
    assert res["prompts"] == 3 and res["template"] == "the chat template" and res["source_verified"] is True
    assert "verified on 3 fixed prompts" in res["summary"] and str(runs) not in res["summary"]
    assert verify_folder(out, what="export")  # the files listed are the ones on disk
    info = json.loads((out / "instructkit.json").read_text())
    assert info["export"]["merged"] is True and info["method"]["name"] == "lora"
    assert not is_trained_run(out)  # a plain model folder now
    assert again.status_code == 200 and again.json()["verified"] is True


def test_export_refuses_bad_outputs_and_a_second_export(
    studio_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import instructkit.serve.export as exporter

    runs = tmp_path / "runs"
    shutil.copytree(studio_root, runs)
    with client(runs) as c:
        for body, status, field in [
            ({"path": "a", "out": "../outside"}, 403, "out"),
            ({"path": "a", "out": str(tmp_path / "abs")}, 403, "out"),
            ({"path": "a", "out": ""}, 400, "out"),
            ({"path": "a", "out": "curated"}, 400, "out"),  # a folder with other files in it
            ({"path": "a", "out": "a/exported"}, 400, "out"),  # inside the run it exports
            ({"path": "a", "out": "exports/a", "format": "onnx"}, 400, "format"),
            ({"path": "a", "out": "exports/a", "format": "gguf"}, 400, "out"),  # gguf writes a *.gguf file
            ({"path": "curated", "out": "exports/c"}, 400, "path"),
        ]:
            r = c.post("/api/export", json=body)
            assert (r.status_code, r.json()["error"]["field"]) == (status, field), (body, r.text)
        assert not (tmp_path / "outside").exists() and not (tmp_path / "abs").exists()
        assert not (runs / "exports").exists() and not (runs / "a" / "exported").exists()
        assert not (runs / "curated" / "config.json").exists()

        started, release = threading.Event(), threading.Event()

        def slow_export(*args: Any, **kw: Any) -> Any:
            started.set()
            release.wait(30)
            raise exporter.ExportError("-o stopped by the test")

        monkeypatch.setattr(exporter, "export_run", slow_export)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(c.post, "/api/export", json={"path": "a", "out": "exports/one"})
            assert started.wait(30)
            second = c.post("/api/export", json={"path": "b", "out": "exports/two"})
            release.set()
            assert second.status_code == 429 and second.json()["error"]["code"] == "busy"
            assert first.result().status_code == 400  # the exporter's error, on its field
            assert first.result().json()["error"]["field"] == "out"
        assert c.get("/api/export/options").json()["busy"] is False
