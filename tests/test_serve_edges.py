"""The server at its edges: API keys that would let an empty token in are refused at start, every hostile
request body gets a 4xx in OpenAI's error shape (never a 500), the request log line shows the status that
was sent, and printed URLs bracket IPv6 hosts. A live server on 127.0.0.1 (a free port, stopped by the
fixture) over a tiny random Llama, as in test_serve.py."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from instructkit.decoding.engine.sampling import Sampling
from instructkit.decoding.engine.scheduler import Engine, wait_until
from instructkit.serve.config import ServerConfig
from instructkit.serve.loading import load_served
from instructkit.serve.server import ServerThread, http_url, is_loopback
from tests.test_serve import USER, _error_shape, post

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


@pytest.fixture(scope="module")
def model_dir(make_tiny_llama: Callable[..., str]) -> str:
    return make_tiny_llama("edges-llama", num_key_value_heads=4, initializer_range=0.2)


@pytest.fixture(scope="module")
def server(model_dir: str) -> Iterator[tuple[str, Any]]:
    served = load_served(model_dir, served_name="tiny")
    with ServerThread(served, ServerConfig(port=0, max_batch=2, max_body_bytes=20_000)) as url:
        yield url, served


# ------------------------------------------------------------------------------------------ API keys


@pytest.mark.parametrize("key", ["", "   ", "\t", " padded", "key\n", "clé"])
def test_server_config_refuses_keys_no_client_could_use(key: str) -> None:
    with pytest.raises(ValueError, match="API key"):
        ServerConfig(api_key=key)


def test_server_config_takes_a_real_key_or_none() -> None:
    assert ServerConfig(api_key="sk-a b!~").api_key == "sk-a b!~"
    assert ServerConfig().api_key is None


def _invoke(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any]]:
    """``instructkit serve ARGS`` in-process, with loading and serving replaced by recorders."""
    import instructkit.serve.loading as loading
    import instructkit.serve.server as server_module
    from instructkit.cli import app

    calls: list[Any] = []

    class Fake:
        names = ["tiny"]

    monkeypatch.setattr(loading, "load_served", lambda *a, **kw: calls.append(("load", a)) or Fake())
    monkeypatch.setattr(server_module, "run_server", lambda served, cfg: calls.append(("run", cfg)))
    result = CliRunner().invoke(app, ["serve", *args], env={"COLUMNS": "300", "NO_COLOR": "1"})
    return result, calls


@pytest.mark.parametrize("key", ["", "  "])
def test_cli_refuses_an_empty_api_key_before_loading(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result, calls = _invoke(["tiny", "--api-key", key], monkeypatch)
    assert result.exit_code == 1
    assert calls == []  # refused before the model is loaded
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "API key is empty" in lines[0] and "Traceback" not in result.output


@pytest.mark.slow  # starts a process
def test_serve_process_refuses_an_empty_api_key(tmp_path: Path) -> None:
    """The real console script: one line, exit 1, no traceback; MODEL does not exist, so a refusal that
    came after loading would be the model's error instead."""
    script = Path(sys.executable).with_name("instructkit")
    env = os.environ | {"COLUMNS": "300", "NO_COLOR": "1"}
    env.pop("INSTRUCTKIT_API_KEY", None)
    missing = str(tmp_path / "never-loaded")
    args = [str(script), "serve", missing, "--host", "127.0.0.1", "--port", "0", "--api-key", ""]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "API key is empty" in lines[0], lines
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------------------------------ URLs


def test_http_url_brackets_ipv6_hosts() -> None:
    assert http_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert http_url("localhost", 80) == "http://localhost:80"
    assert http_url("::", 8000) == "http://[::]:8000"
    assert http_url("::1", 8000) == "http://[::1]:8000"
    assert http_url("[::1]", 8000) == "http://[::1]:8000"  # already bracketed
    assert http_url("fe80::1%eth0", 8000) == "http://[fe80::1%25eth0]:8000"  # RFC 6874 zone


def test_is_loopback() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "localhost", "::1"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "example.com", ""]))


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("::", "http://[::]:8000/"),
        ("::1", "http://[::1]:8000/"),
        ("fe80::1%eth0", "http://[fe80::1%25eth0]:8000/"),
    ],
)
def test_cli_prints_a_bracketed_ipv6_url(host: str, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result, calls = _invoke(["tiny", "--host", host], monkeypatch)
    assert result.exit_code == 0, result.output
    assert f"serving tiny on {url} " in result.output, result.output
    assert calls[-1][0] == "run" and calls[-1][1].host == host


# ------------------------------------------------------------------------------------------ hostile bodies

M = [{"role": "user", "content": "hi"}]
C = {"model": "tiny", "messages": M, "max_tokens": 2}
P = {"model": "tiny", "prompt": "Once", "max_tokens": 2}

# (path, body: a JSON-able value or raw bytes, the status, the param the error names: a prefix, or None)
HOSTILE: list[tuple[str, Any, int, str | None]] = [
    (CHAT, C | {"seed": 2**70, "temperature": 1}, 422, "seed"),
    (CHAT, C | {"seed": -(2**63) - 1, "temperature": 1}, 422, "seed"),
    (CHAT, C | {"seed": "7"}, 422, "seed"),
    (CHAT, C | {"seed": 1.5}, 422, "seed"),
    (CHAT, C | {"seed": True}, 422, "seed"),
    (CHAT, C | {"max_tokens": True}, 422, "max_tokens"),
    (CHAT, C | {"max_tokens": 1.0}, 422, "max_tokens"),
    (CHAT, C | {"max_tokens": "5"}, 422, "max_tokens"),
    (CHAT, C | {"max_tokens": 0}, 422, "max_tokens"),
    (CHAT, C | {"max_tokens": 2**70}, 400, "max_tokens"),
    (CHAT, C | {"max_completion_tokens": False}, 422, "max_completion_tokens"),
    (CHAT, C | {"n": True}, 422, "n"),
    (CHAT, C | {"n": 2**70}, 400, "n"),
    (CHAT, C | {"stream": "yes"}, 422, "stream"),
    (CHAT, C | {"stream": 1}, 422, "stream"),
    (
        CHAT,
        C | {"stream": True, "stream_options": {"include_usage": "no"}},
        422,
        "stream_options.include_usage",
    ),
    (CHAT, C | {"stream": True, "stream_options": []}, 422, "stream_options"),
    (CHAT, C | {"logprobs": "yes"}, 422, "logprobs"),
    (CHAT, C | {"logprobs": True}, 400, "logprobs"),
    (CHAT, C | {"top_logprobs": True}, 422, "top_logprobs"),
    (CHAT, C | {"temperature": "0.5"}, 422, "temperature"),
    (CHAT, C | {"temperature": True}, 422, "temperature"),
    (CHAT, C | {"temperature": -0.1}, 422, "temperature"),
    (CHAT, C | {"temperature": 3}, 422, "temperature"),
    (CHAT, C | {"temperature": 10**400}, 422, "temperature"),
    (CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}', 422, "temperature"),
    (CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 422, "temperature"),
    (CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "temperature": -1e999}', 422, "temperature"),
    (CHAT, C | {"top_p": 0}, 422, "top_p"),
    (CHAT, C | {"top_p": "1"}, 422, "top_p"),
    (CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "top_p": NaN}', 422, "top_p"),
    (CHAT, C | {"stop": 5}, 422, "stop"),
    (CHAT, C | {"stop": [1]}, 422, "stop.0"),
    (CHAT, C | {"stop": [""]}, 400, "stop"),
    (CHAT, C | {"stop": ["a"] * 5}, 400, "stop"),
    (CHAT, C | {"model": 5}, 422, "model"),
    (CHAT, C | {"model": ["tiny"]}, 422, "model"),
    (CHAT, C | {"model": "nope"}, 404, "model"),
    (CHAT, {"model": "tiny"}, 422, "messages"),
    (CHAT, C | {"messages": "hi"}, 422, "messages"),
    (CHAT, C | {"messages": []}, 422, "messages"),
    (CHAT, C | {"messages": [1]}, 422, "messages.0"),
    (CHAT, C | {"messages": [{"role": "user"}]}, 422, "messages.0.content"),
    (CHAT, C | {"messages": [{"role": "user", "content": 5}]}, 422, "messages.0.content"),
    (CHAT, C | {"messages": [{"role": "user", "content": None}]}, 422, "messages.0.content"),
    (CHAT, C | {"messages": [{"role": "user", "content": {"text": "x"}}]}, 422, "messages.0.content"),
    (CHAT, C | {"messages": [{"role": 1, "content": "x"}]}, 422, "messages.0.role"),
    (CHAT, C | {"messages": [{"role": "robot", "content": "x"}]}, 422, "messages.0.role"),
    (
        CHAT,
        C | {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        422,
        "messages.0.content.0",
    ),  # fmt: skip
    (
        CHAT,
        C | {"messages": [{"role": "user", "content": [{"type": "text", "text": ["x"]}]}]},
        422,
        "messages.0.content.0.text",
    ),  # fmt: skip
    (CHAT, C | {"messages": [[[[[[[[[[{"a": [1, {"b": None}]}]]]]]]]]]]}, 422, "messages.0"),
    (CHAT, b"", 422, None),
    (CHAT, b"{", 422, None),
    (CHAT, b"[]", 422, None),
    (CHAT, b"null", 422, None),
    (CHAT, b"42", 422, None),
    (CHAT, b'"a string"', 422, None),
    (CHAT, b'{"messages": [{"role": "user", "content": "\xff\xfe bad utf-8"}]}', 422, None),
    (CHAT, b'{"messages": [{"role": "user", "content": "lone \\ud800 surrogate"}]}', 422, None),
    (CHAT, b"[" * 100_000 + b"]" * 100_000, 413, None),  # over max_body_bytes
    (CHAT, b"[" * 5_000 + b"]" * 5_000, 422, None),  # nested past the parser's depth limit
    (CHAT, b"\x00\x01\x02", 422, None),
    (COMPLETIONS, P | {"prompt": 5}, 422, "prompt"),
    (COMPLETIONS, P | {"prompt": [1, 2, 3]}, 422, "prompt"),
    (COMPLETIONS, P | {"prompt": []}, 400, "prompt"),
    (COMPLETIONS, P | {"prompt": ["a", "b"]}, 400, "prompt"),
    (COMPLETIONS, P | {"prompt": ""}, 400, "prompt"),
    (COMPLETIONS, P | {"echo": "yes"}, 422, "echo"),
    (COMPLETIONS, P | {"echo": True}, 400, "echo"),
    (COMPLETIONS, P | {"logprobs": True}, 422, "logprobs"),
    (COMPLETIONS, P | {"logprobs": 1}, 400, "logprobs"),
    (COMPLETIONS, P | {"logprobs": 6}, 422, "logprobs"),
    (COMPLETIONS, P | {"max_tokens": True}, 422, "max_tokens"),
    (COMPLETIONS, P | {"seed": 2**64}, 422, "seed"),
    (COMPLETIONS, {"model": "tiny"}, 422, "prompt"),
]


def test_every_hostile_body_gets_a_4xx_in_the_error_shape(
    server: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = server
    wrong = []
    with caplog.at_level("INFO", logger="instructkit.serve"):
        for path, body, status, param in HOSTILE:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            r = post(url + path, raw=raw)
            err = _error_shape(r)
            shown = raw[:80]
            if r.status_code != status:
                wrong.append((shown, r.status_code, err["message"]))
            elif param is not None and not (err["param"] or "").startswith(param):
                wrong.append((shown, "param", err["param"], err["message"]))
            elif status == 422 and param is not None and not err["message"].startswith(param):
                wrong.append((shown, "message", err["message"]))
        assert wait_until(lambda: sum(CHAT in r.getMessage() or COMPLETIONS in r.getMessage()
                                      for r in caplog.records) >= len(HOSTILE))  # fmt: skip
    assert wrong == []
    lines = [r.getMessage() for r in caplog.records if r.name == "instructkit.serve"]
    assert not any(r.exc_info for r in caplog.records)  # nothing reached the crash path
    assert not any("disconnected" in line or " 500 " in line for line in lines)
    assert sum(" 422 " in line for line in lines) == sum(s == 422 for _, _, s, _ in HOSTILE)


def test_bool_and_string_are_not_coerced(server: tuple[str, Any]) -> None:
    """The three bodies that were accepted: true as max_tokens 1, "yes" as stream true, "0.5" as 0.5."""
    url, _ = server
    for extra, field in [({"max_tokens": True}, "max_tokens"), ({"stream": "yes"}, "stream"),
                         ({"temperature": "0.5"}, "temperature")]:  # fmt: skip
        r = post(url + CHAT, {"model": "tiny", "messages": USER} | extra)
        assert r.status_code == 422, (extra, r.text)
        err = _error_shape(r)
        assert err["param"] == field and err["type"] == "invalid_request_error"
    r = post(url + CHAT, C | {"max_tokens": True})
    assert _error_shape(r)["message"] == "max_tokens: Input should be a valid integer, got true"


def test_edge_values_that_are_valid_are_served(server: tuple[str, Any]) -> None:
    """Both ends of the seed range, an integer temperature, and a temperature so small that the scaled
    logits overflow (answered as its limit, greedy, instead of failing the step)."""
    url, _ = server
    for extra in [{"seed": 2**64 - 1, "temperature": 1}, {"seed": -(2**63), "temperature": 1},
                  {"seed": 0, "temperature": 1, "top_p": 1e-300}, {"temperature": 2}]:  # fmt: skip
        r = post(url + CHAT, C | extra)
        assert r.status_code == 200, (extra, r.text)
    greedy = post(url + CHAT, C | {"max_tokens": 6, "temperature": 0}).json()
    tiny = post(url + CHAT, C | {"max_tokens": 6, "temperature": 1e-300})
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["choices"][0]["message"]["content"] == greedy["choices"][0]["message"]["content"]
    r = post(
        url + COMPLETIONS, P | {"logprobs": None, "echo": False, "stream_options": {"include_usage": True}}
    )
    assert r.status_code == 200, r.text


def test_template_refusing_the_messages_is_400(
    server: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    raising = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role here') }}{% endif %}"
    )
    monkeypatch.setattr(served.template, "template", raising + served.template.template)
    r = post(url + CHAT, C | {"messages": [{"role": "system", "content": "x"}, *M]})
    assert r.status_code == 400
    err = _error_shape(r)
    assert err["param"] == "messages" and "no system role here" in err["message"]


# ------------------------------------------------------------------------------------------ crash path


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_unexpected_error_is_500_logged_once_with_its_status(
    server: tuple[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug behind a request: answered 500 in the error shape, the traceback logged once, and the request
    log line says 500 (it said "disconnected": Starlette's outermost middleware sent the 500, outside the
    log middleware, and re-raised, so uvicorn logged a second traceback)."""
    url, served = server

    def broken(prompt: str) -> list[int]:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(served, "text_ids", broken)
    uvicorn_log = _Collect()
    logging.getLogger("uvicorn.error").addHandler(uvicorn_log)
    try:
        with caplog.at_level("INFO", logger="instructkit.serve"):
            r = post(url + COMPLETIONS, P)
            # the request's log line, not the traceback record (logged first, and naming the path too)
            assert wait_until(
                lambda: any(COMPLETIONS in rec.getMessage() and not rec.exc_info for rec in caplog.records)
            )
    finally:
        logging.getLogger("uvicorn.error").removeHandler(uvicorn_log)
    assert r.status_code == 500
    err = _error_shape(r)
    assert err["type"] == "server_error" and "secret" not in r.text
    traced = [rec for rec in caplog.records if rec.exc_info]
    assert len(traced) == 1 and "unhandled error on POST /v1/completions" in traced[0].getMessage()
    line = next(
        rec.getMessage() for rec in caplog.records if COMPLETIONS in rec.getMessage() and not rec.exc_info
    )
    assert " 500 " in line and "error=RuntimeError" in line and "disconnected" not in line
    assert not any(rec.exc_info or "Exception in ASGI" in rec.getMessage() for rec in uvicorn_log.records)


def test_a_failed_step_answers_the_prompts_it_was_joining(
    model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step takes joining prompts out of the lane's pending list before sampling their first token; a
    failure there answered only the lane's rows and pending, so a joining request waited forever."""
    served = load_served(model_dir)
    engine = Engine(served.model, served.tokenizer, max_batch=2).start()
    try:
        monkeypatch.setattr(engine, "_sample", lambda logits, rows: 1 / 0)
        req = engine.submit(served.prompt_ids(USER), Sampling(max_tokens=3))
        assert wait_until(lambda: req.result is not None, timeout=20)
        assert req.result is not None and req.result.finish_reason == "error"
        assert "ZeroDivisionError" in (req.result.error or "")
    finally:
        engine.stop()
