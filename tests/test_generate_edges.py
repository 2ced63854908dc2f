"""The generate commands at their edges (issue #21): ``--set backend.*`` kept whatever backend flags are
given and recorded in the card (secrets redacted); a server that is not listening failing the run at once
with one line; plain progress lines when stderr is not a terminal. All in-process: the CLI through typer's
CliRunner, the fake OpenAI server (tests/fake_openai_server.py) on a thread."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.cli.generate.common import backend_flags, merge_backend
from instructkit.generate.backends import build_backend
from instructkit.generate.backends.base import Request
from instructkit.generate.backends.openai_api import ServerUnreachable
from instructkit.generate.runner import GenerateConfigError, generate, load_generate_config, redacted
from tests.fake_openai_server import FakeServer
from tests.scripted_backend import ScriptedBackend
from tests.test_self_instruct_generator import answer

SECRET = "sk-test-0123456789"
# a small Self-Instruct run: one round of two requests
SMALL = ["-n", "1", "--set", "max_rounds=1", "--set", "requests_per_round=2"]


def invoke(*args: str):  # noqa: ANN201
    return CliRunner().invoke(app, ["generate", "self-instruct", *args])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------- --set backend.* is never dropped


def test_set_backend_timeout_applies_with_backend_flags_and_the_card_records_it(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    with FakeServer(delay=30) as server:  # a server slower than the timeout asked for
        started = time.monotonic()
        result = invoke(
            "--backend", "openai", "--base-url", server.url, "--model", "fake", "--api-key", SECRET,
            "--set", "backend.timeout=1", "--set", "backend.max_retries=0", *SMALL, "-o", str(out),
        )  # fmt: skip
        took = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert took < 29, f"the 1 s timeout was not applied: the run took {took:.1f} s"  # the server: 30 s
    card = json.loads((out / "card.json").read_text())
    assert card["summary"]["sent"] == 2 and card["summary"]["errors"] == 2
    settings = card["backend"]["settings"]
    assert settings["name"] == "openai" and settings["timeout"] == 1 and settings["max_retries"] == 0
    assert settings["base_url"] == server.url and settings["model"] == "fake"
    assert settings["concurrency"] == 8 and settings["backoff_max"] == 60.0  # defaults are written too
    assert settings["api_key"] == "***" and card["config"]["backend"]["api_key"] == "***"
    assert card["config"]["backend"]["timeout"] == 1
    for name in ("card.json", "card.md", "records.jsonl", "rejects.jsonl"):
        assert SECRET not in (out / name).read_text(), name
    assert SECRET not in result.output
    # output captured (not a terminal): the plain progress line, not an empty log until the table
    assert re.search(r"\[self-instruct\] \d+ s: kept 0/1 instructions, rejected 2", result.output), (
        result.output
    )


def test_flags_refine_the_config_files_backend_and_never_drop_its_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(yaml.safe_dump({"backend": {"name": "openai", "timeout": 7, "requests_per_minute": 600}}))
    out = tmp_path / "gen"
    with FakeServer() as server:
        # --model alone used to turn the file's openai backend into a local one, its keys gone
        result = invoke(
            "--config", str(cfg), "--base-url", server.url, "--model", "fake", "--concurrency", "3",
            "--set", "backend.price_per_1k_prompt=0.5", *SMALL, "-o", str(out), "-q",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "card.json").read_text())["backend"]["settings"]
    assert settings["timeout"] == 7 and settings["requests_per_minute"] == 600
    assert settings["price_per_1k_prompt"] == 0.5 and settings["concurrency"] == 3
    assert settings["model"] == "fake" and settings["base_url"] == server.url


def test_a_backend_key_the_chosen_backend_does_not_have_is_an_error_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(yaml.safe_dump({"backend": {"name": "local", "batch_size": 4, "model": "m"}}))
    # the flags switch to openai: batch_size was written for local, and is named, not dropped
    result = invoke("--config", str(cfg), "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                    "-o", str(tmp_path / "a"))  # fmt: skip
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "'backend.batch_size'" in said and str(cfg) in said and "written for the local backend" in said
    # a --set key without any backend flag: the default backend (local) has no timeout
    result = invoke("--set", "backend.timeout=2", "-o", str(tmp_path / "b"))
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "'backend.timeout' (from --set backend.timeout)" in said and "local backend" in said
    assert "Traceback" not in result.output and not (tmp_path / "b").exists()


def test_merge_backend_rule() -> None:
    # the name: --backend, else --base-url's openai, else the config's, else base_url's openai, else local
    assert merge_backend(None, {}) is None
    assert merge_backend({"timeout": 1}, backend_flags("openai", None, None, None, None)) == {
        "timeout": 1,
        "name": "openai",
    }
    assert merge_backend({"base_url": "http://h/v1"}, {})["name"] == "openai"
    assert merge_backend({"name": "openai", "timeout": 3}, backend_flags(None, "m", None, None, 2)) == {
        "name": "openai",
        "timeout": 3,
        "model": "m",
        "concurrency": 2,
    }
    # --concurrency is the local backend's batch_size; $OPENAI_API_KEY (--api-key) means nothing to it
    assert merge_backend({}, backend_flags(None, None, None, "k", 4)) == {"name": "local", "batch_size": 4}
    # switching keeps what the new backend has (model), and names what it has not
    assert merge_backend(
        {"name": "local", "model": "x"}, backend_flags("openai", None, None, None, None)
    ) == {
        "name": "openai",
        "model": "x",
    }
    with pytest.raises(GenerateConfigError, match=r"'backend.device'.*written for the local backend"):
        merge_backend({"name": "local", "device": "cpu"}, {"name": "openai"}, {"device": "f.yaml"})
    with pytest.raises(GenerateConfigError, match="--base-url is not a setting of the local backend"):
        merge_backend({}, backend_flags("local", None, "http://h/v1", None, None))
    # whatever the merge makes loads (every parameter checked by the backend)
    data = {"backend": merge_backend({"timeout": 1}, {"base_url": "http://h/v1"})}
    assert load_generate_config("self-instruct", data).backend["timeout"] == 1


def test_redaction_keeps_what_is_not_a_secret() -> None:
    got = redacted(
        {
            "api_key": "sk-1",
            "auth_token": "t",
            "apiKey": "k",
            "max_tokens_param": "max_tokens",
            "base_url": "https://user:pw@host/v1?api_key=abc&x=1",
            "model": "m",
            "nested": {"password": "p"},
            "unset_key": None,
        }
    )
    assert got["api_key"] == got["auth_token"] == got["apiKey"] == got["nested"]["password"] == "***"
    assert got["max_tokens_param"] == "max_tokens" and got["model"] == "m" and got["unset_key"] is None
    assert "pw" not in got["base_url"] and "abc" not in got["base_url"] and "x=1" in got["base_url"]
    assert got["base_url"].startswith("https://user:***@host/v1")


# --------------------------------------------------------------------- nothing listening: fail fast, one line


def test_nothing_listening_fails_at_once_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "gen"
    # default retries and backoff: the run used to print nothing for minutes, retrying every round
    result = invoke("--backend", "openai", "--base-url", url, "-o", str(out))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == 1, result.output
    line = " ".join(result.output[result.output.index("error:") :].split())
    assert f"error: {url} refused 8 of 8 requests (connection refused); is the server running?" in line
    assert "Traceback" not in result.output
    assert not (out / "card.json").exists()  # nothing was made; the cache keeps nothing to resend


def test_a_server_that_answers_some_requests_is_not_unreachable() -> None:
    with FakeServer({"a": ["500"]}) as server:
        b = build_backend("openai", model="fake", base_url=server.url, api_key="k", max_retries=0)
        replies = b.complete([Request([{"role": "user", "content": k}]) for k in "ab"])
    assert not replies[0].ok and replies[1].ok
    b = build_backend("openai", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1, concurrency=2)
    with pytest.raises(ServerUnreachable, match="refused 2 of 2 requests"):
        b.complete([Request([{"role": "user", "content": str(i)}]) for i in range(5)])


# ------------------------------------------------------------------- progress lines when not on a terminal


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def slow(request: Request) -> str:
        time.sleep(0.01)
        return answer(request)

    cfg = load_generate_config("self-instruct", {"n": 6, "requests_per_round": 2})
    generate(
        "self-instruct", cfg, tmp_path / "gen", backend=ScriptedBackend(answer=slow), progress_every=0.05
    )
    err = capsys.readouterr().err
    pattern = re.compile(
        r"^\[self-instruct\] \d+ s: kept (\d+)/6 instructions, rejected (\d+).*?, "
        r"requests (\d+) sent \+ (\d+) cached \((\d+) errors\), tokens [\d,]+ \([\d,]+ tokens/s\), "
        r"[\d.]+ kept/min$"
    )
    lines = [m for line in err.splitlines() if (m := pattern.match(line))]
    assert len(lines) >= 3, err  # periodic lines, then the last one
    assert lines[-1].group(1) == "6" and int(lines[-1].group(3)) > 0
    assert "\x1b[" not in err  # plain text, no terminal control sequences
    capsys.readouterr()
    generate(
        "self-instruct", cfg, tmp_path / "quiet", backend=ScriptedBackend(answer=answer), show_progress=False
    )
    assert capsys.readouterr().err == ""


def test_every_generator_has_a_subcommand_with_the_shared_options_declared_once() -> None:
    """Each registered generator is an ``instructkit generate`` subcommand, and every subcommand carries the
    shared options from ``cli/generate/common.py`` (declared there only)."""
    import typer.main

    from instructkit.cli.generate import app as generate_app
    from instructkit.cli.generate.common import SHARED
    from instructkit.generate.runner import GENERATORS

    group = typer.main.get_group(generate_app)
    assert sorted(group.commands) == sorted(GENERATORS)
    shared = {n for n, _, _ in SHARED}
    for name, cmd in group.commands.items():
        params = {p.name for p in cmd.params}
        assert shared <= params, (name, sorted(shared - params))
        flags = [opt for p in cmd.params for opt in p.opts]
        assert len(flags) == len(set(flags)), f"{name}: an option name is used twice: {sorted(flags)}"
    src = Path(__file__).parent.parent / "src" / "instructkit" / "cli" / "generate"
    for module in src.glob("*.py"):
        if module.name != "common.py":
            assert '"--budget-tokens"' not in module.read_text(), f"{module.name} redeclares a shared option"
