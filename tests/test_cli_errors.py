"""Every command answers bad input with one line, never a traceback.

Two layers (cli/common.py): each command turns the library's expected errors into ``error: ...`` naming
the file, line, field or key; the root command group turns anything else into one line plus the path of
the saved traceback (``--debug`` prints it). The walk below feeds every command that reads a path each
kind of damaged input a careless user hands over — an empty file, a binary file, a UTF-16 file, a file of
garbage, a folder where a file belongs, a path that does not exist — and asserts one line naming the
problem, with no traceback and no "unexpected" error (that would be an error the command should have
named itself).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from instructkit.cli import app

KINDS = ("empty", "binary", "utf16", "garbage", "folder", "missing")


def damaged(folder: Path, kind: str, suffix: str) -> Path:
    path = folder / f"{kind}{suffix}"
    record = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    )
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "utf16":
        path.write_bytes((record + "\n").encode("utf-16"))
    elif kind == "garbage":
        path.write_text("{not json: [\n\tmodel: <<\n")
    elif kind == "folder":
        path.mkdir()
        (path / "stray.txt").write_text("nothing to see\n")
    return path  # "missing": never created


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# An empty config file is a valid one (every default): the run then fails fast on a server that is not there.
NO_SERVER = [
    "--backend",
    "openai",
    "--base-url",
    "http://127.0.0.1:{PORT}/v1",
    "--set",
    "backend.max_retries=0",
]

# (name, argv with {X} for the damaged path and {OUT} for an output path, suffix of the damaged path)
COMMANDS = [
    ("data convert", ["data", "convert", "{X}", "--to", "alpaca", "-o", "{OUT}.jsonl"], ".jsonl"),
    ("data show", ["data", "show", "{X}"], ".jsonl"),
    ("data inspect", ["data", "inspect", "{X}", "--model", "{MODEL}"], ".jsonl"),
    ("data curate", ["data", "curate", "{X}", "-o", "{OUT}"], ".jsonl"),
    ("data curate --config", ["data", "curate", "{GOOD}", "--config", "{X}", "-o", "{OUT}"], ".yaml"),
    ("data stats", ["data", "stats", "{X}"], ""),
    ("data template", ["data", "template", "{X}", "--task", "classification", "-o", "{OUT}.jsonl"], ".jsonl"),
    ("data template --templates", ["data", "template", "{GOOD}", "--task", "dialogue", "--templates", "{X}", "-o", "{OUT}.jsonl"], ".yaml"),
    ("data mixture", ["data", "mixture", "{X}", "-o", "{OUT}.jsonl"], ".yaml"),
    ("train", ["train", "{X}"], ".yaml"),
    ("eval --data", ["eval", "--model", "{MODEL}", "--data", "{X}", "-o", "{OUT}"], ".jsonl"),
    ("eval --model", ["eval", "--model", "{X}", "--data", "{GOOD}", "-o", "{OUT}"], ""),
    ("run", ["run", "{X}"], ".yaml"),
    ("continual", ["continual", "{X}"], ".yaml"),
    ("continual compare", ["continual", "compare", "{X}", "{X}"], ""),
    ("report", ["report", "{X}"], ""),
    ("export", ["export", "{X}", "-o", "{OUT}"], ""),
    ("chat", ["chat", "{X}", "--prompt", "hi"], ""),
    ("chat --adapter", ["chat", "{MODEL}", "--adapter", "{X}", "--prompt", "hi"], ""),
    ("serve", ["serve", "{X}", "--port", "{PORT}"], ""),
    ("serve --adapter", ["serve", "{MODEL}", "--adapter", "{X}", "--port", "{PORT}"], ""),
    ("generate self-instruct --config", ["generate", "self-instruct", "--config", "{X}", "-o", "{OUT}", *NO_SERVER], ".yaml"),
    ("generate self-instruct --seeds", ["generate", "self-instruct", "--seeds", "{X}", "-o", "{OUT}", "--model", "{MODEL}"], ".jsonl"),
    ("generate evol --in", ["generate", "evol", "--in", "{X}", "-o", "{OUT}", "--model", "{MODEL}"], ".jsonl"),
    ("generate code --seeds", ["generate", "code", "--seeds", "{X}", "-o", "{OUT}", *NO_SERVER], ".jsonl"),
    ("generate code --decontaminate-file", ["generate", "code", "--decontaminate-file", "{X}", "-o", "{OUT}", *NO_SERVER], ".jsonl"),
    ("generate code --config", ["generate", "code", "--config", "{X}", "-o", "{OUT}", *NO_SERVER], ".yaml"),
]  # fmt: skip


@pytest.fixture(scope="module")
def good_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(4)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name, argv, suffix", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_answers_damaged_input_in_one_line(
    name: str, argv: list[str], suffix: str, kind: str, tmp_path: Path, tiny_llama: str, good_data: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))  # saved tracebacks land here
    bad = damaged(tmp_path, kind, suffix)
    subs = {"{X}": str(bad), "{OUT}": str(tmp_path / "out"), "{MODEL}": tiny_llama, "{GOOD}": str(good_data),
            "{PORT}": str(free_port())}  # fmt: skip
    args = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    result = CliRunner().invoke(app, args)
    out = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{name} on a {kind} input raised {result.exception!r}"
    )
    if result.exit_code != 0:  # refused: one line saying why (an empty file may also be 0 records, exit 0)
        errors = [line for line in out.splitlines() if line.startswith("error:") or "Error" in line]
        assert errors, f"{name} on a {kind} input exited {result.exit_code} without saying why:\n{out}"
    assert "Traceback" not in out, out
    assert "unexpected" not in out, f"{name} on a {kind} input: an error the command did not name:\n{out}"
    assert not (tmp_path / "cache" / "errors").exists()


def test_an_unexpected_error_is_one_line_with_the_saved_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import instructkit.evaluate.report as report_mod

    def broken(*_a, **_k):
        raise RuntimeError("something inside broke\nwith a second line")

    monkeypatch.setattr(report_mod, "build_report", broken)
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("INSTRUCTKIT_DEBUG", raising=False)
    (tmp_path / "run").mkdir()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unexpected RuntimeError: something inside broke")
    saved = sorted((tmp_path / "cache" / "errors").glob("*.txt"))
    assert len(saved) == 1 and str(saved[0]) in lines[0]
    text = saved[0].read_text()
    assert "Traceback" in text and "with a second line" in text and "def broken" not in lines[0]

    debug = CliRunner().invoke(app, ["--debug", "report", str(tmp_path / "run")])
    assert debug.exit_code == 1 and "Traceback" in debug.output and "something inside broke" in debug.output


def test_an_os_error_naming_a_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import instructkit.evaluate.report as report_mod

    def denied(*_a, **_k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "run" / "report.md"))

    monkeypatch.setattr(report_mod, "build_report", denied)
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "run").mkdir()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {tmp_path / 'run' / 'report.md'}: permission denied"
    assert not (tmp_path / "cache" / "errors").exists()
