"""The studio's shell: the runs listing, path safety on every URL, the API key, loopback by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from instructkit.studio.app import build_app
from instructkit.studio.config import StudioConfig
from instructkit.studio.errors import StudioError
from instructkit.studio.paths import RunsRoot


def client(root: Path, **kw: object) -> TestClient:
    return TestClient(build_app(StudioConfig(runs=str(root), **kw)))


def test_runs_table_lists_each_run_folder_once_with_kind_status_and_metrics(studio_root: Path) -> None:
    with client(studio_root) as c:
        rows = {r["path"]: r for r in c.get("/api/runs").json()["runs"]}
    assert set(rows) == {"a", "b", "curated"}  # a recipe's train/ and data/ are parts of it, not rows
    a = rows["a"]
    assert (a["kind"], a["status"], a["stage"]) == ("run", "done", "report")
    assert a["stages_done"] == ["data", "before", "train", "after", "report"]
    after = json.loads((studio_root / "a" / "eval" / "after.json").read_text())["metrics"]
    assert a["metrics"]["perplexity"]["after"] == after["perplexity"]
    card = json.loads((studio_root / "curated" / "card.json").read_text())
    assert rows["curated"]["kind"] == "curate"
    assert rows["curated"]["metrics"]["rejected"]["after"] == card["accounting"]["rejected"] == 3


def test_runs_filters_and_an_unknown_kind_is_refused(studio_root: Path) -> None:
    with client(studio_root) as c:
        assert [r["path"] for r in c.get("/api/runs", params={"kind": "curate"}).json()["runs"]] == [
            "curated"
        ]
        assert [r["path"] for r in c.get("/api/runs", params={"q": "B"}).json()["runs"]] == ["b"]
        r = c.get("/api/runs", params={"kind": "nope"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "kind"


def test_a_run_stopped_midway_is_incomplete_at_its_next_stage(studio_root: Path, tmp_path: Path) -> None:
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(studio_root / "a", runs / "half")
    ledger = json.loads((runs / "half" / "stages.json").read_text())
    for stage in ("after", "report"):
        del ledger[stage]
    (runs / "half" / "stages.json").write_text(json.dumps(ledger))
    with client(runs) as c:
        (row,) = c.get("/api/runs").json()["runs"]
    assert (row["status"], row["stage"]) == ("incomplete", "after")


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "/etc/passwd",
        "a/../../x",
        "a/../../../etc/passwd",
        "..",
        "a\\..\\..\\x",
        "a/\0",
        "a/./../../x",
        "~/x/../../..",
    ],
)
def test_file_urls_outside_the_runs_folder_are_refused(studio_root: Path, path: str) -> None:
    with client(studio_root) as c:
        r = c.get("/api/file", params={"path": path})
    assert r.status_code == 403 and r.json()["error"]["code"] == "path_refused", r.text


def test_a_symlink_out_of_the_runs_folder_is_refused(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "secret.txt").write_text("not yours")
    (runs / "link").symlink_to(tmp_path)
    root = RunsRoot(runs)
    with pytest.raises(StudioError) as e:
        root.resolve("link/secret.txt")
    assert e.value.status == 403
    with client(runs) as c:
        r = c.get("/api/file", params={"path": "link/secret.txt"})
    assert r.status_code == 403 and "not yours" not in r.text


def test_files_under_the_runs_folder_are_served_read_only_and_sandboxed(studio_root: Path) -> None:
    with client(studio_root) as c:
        r = c.get("/api/file", params={"path": "a/report.md"})
        missing = c.get("/api/file", params={"path": "a/nope.md"})
        post = c.post("/api/file", params={"path": "a/report.md"})
    assert r.status_code == 200 and r.text == (studio_root / "a" / "report.md").read_text()
    assert r.headers["content-security-policy"] == "sandbox"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert post.status_code == 405


def test_the_api_key_is_required_and_checked(studio_root: Path) -> None:
    with client(studio_root, api_key="s3cret") as c:
        assert c.get("/").status_code == 200  # the page itself asks for the key
        assert c.get("/api/runs").status_code == 401
        assert c.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.get("/api/runs", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["runs"]


def test_loopback_by_default_and_a_key_required_elsewhere(tmp_path: Path) -> None:
    assert StudioConfig().host == "127.0.0.1"
    with pytest.raises(ValueError, match="needs --api-key"):
        StudioConfig(runs=str(tmp_path), host="0.0.0.0")
    with pytest.raises(ValueError, match="empty"):
        StudioConfig(runs=str(tmp_path), api_key=" ")
    assert StudioConfig(runs=str(tmp_path), host="0.0.0.0", api_key="k").api_key == "k"


def test_cli_refuses_a_public_host_without_a_key(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from instructkit.cli import app

    r = CliRunner().invoke(
        app, ["studio", "--runs", str(tmp_path), "--host", "0.0.0.0"], env={"INSTRUCTKIT_API_KEY": ""}
    )
    assert r.exit_code != 0 and "needs --api-key" in r.output
    r = CliRunner().invoke(app, ["studio", "--runs", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "no such folder" in r.output


def test_a_body_over_the_limit_is_refused_in_the_error_shape(studio_root: Path) -> None:
    with client(studio_root, max_body_bytes=100) as c:
        big = c.post("/api/chat", content=b"x" * 500, headers={"content-type": "application/json"})
        chunked = c.post(
            "/api/chat", content=iter([b"x" * 60, b"y" * 60]), headers={"content-type": "application/json"}
        )
    for r in (big, chunked):
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large", r.text
