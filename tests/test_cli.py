"""The command line: documented options, conversion accounting, show, inspect, chat."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.formats import read_records

from .conftest import FIXTURES, without_source

runner = CliRunner()
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
DEMO = Path(__file__).parent.parent / "examples" / "data" / "demo.jsonl"
COUNTS = re.compile(r"read (\d+) records: written (\d+) to .* rejected (\d+)")


def invoke(*args: str):
    return runner.invoke(app, list(args), env=ENV)


def _walk(cmd, path: tuple[str, ...] = ()):
    yield path, cmd
    if hasattr(cmd, "list_commands"):  # a group (typer ships its own click)
        ctx = cmd.context_class(cmd)
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name), (*path, name))


def test_every_command_and_option_is_documented() -> None:
    root = typer.main.get_command(app)
    seen = 0
    for path, cmd in _walk(root):
        assert (cmd.help or "").strip(), f"command {' '.join(path)} has no help"
        for param in cmd.params:
            if param.name in ("help", "install_completion", "show_completion"):
                continue
            assert (getattr(param, "help", None) or "").strip(), f"{' '.join(path)} {param.name} has no help"
            seen += 1
        result = invoke(*path, "--help")
        assert result.exit_code == 0, result.output
    assert seen >= 15


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("instructkit ")


@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "alpaca", "instructkit"])
def test_convert_demo_data_round_trips(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"demo.{fmt}.jsonl"
    result = invoke("data", "convert", str(DEMO), "--to", fmt, "-o", str(out))
    assert result.exit_code == 0, result.output
    n_read, written, rejected = map(int, COUNTS.search(result.output).groups())
    assert (n_read, written, rejected) == (40, 40, 0)
    original = read_records(DEMO)
    assert [r.content() for r in read_records(out)] == [r.content() for r in original]


def test_convert_counts_unsupported_records_as_rejects(tmp_path: Path) -> None:
    out = tmp_path / "demo.dolly.json"
    result = invoke("data", "convert", str(DEMO), "--to", "dolly", "-o", str(out), "--on-error", "skip")
    assert result.exit_code == 0, result.output
    n_read, written, rejected = map(int, COUNTS.search(result.output).groups())
    multi = sum(1 for r in read_records(DEMO) if len(r.messages) != 2)
    assert rejected == multi > 0 and n_read == written + rejected == 40
    rejects = [json.loads(x) for x in (tmp_path / "demo.rejects.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rejects} == {"unsupported"} and len(rejects) == rejected
    # Without --on-error skip the same conversion stops and names the record.
    result = invoke("data", "convert", str(DEMO), "--to", "dolly", "-o", str(tmp_path / "x.json"))
    assert result.exit_code == 1 and "record" in result.output and "[unsupported]" in result.output


def test_convert_many_inputs_to_conll_and_parquet(tmp_path: Path) -> None:
    inputs = [str(FIXTURES / "formats" / n) for n in ("conll_iob1.txt", "conll_bio.conll")]
    out = tmp_path / "all.conll"
    result = invoke("data", "convert", *inputs, "--to", "conll", "-o", str(out))
    assert result.exit_code == 0 and COUNTS.search(result.output).groups() == ("4", "4", "0")
    pq = tmp_path / "all.parquet"
    assert invoke("data", "convert", str(out), "--to", "instructkit", "-o", str(pq)).exit_code == 0
    expected = [without_source(r) for p in inputs for r in read_records(p)]
    assert [without_source(r) for r in read_records(pq)] == expected


def test_unknown_format_name_is_rejected(tmp_path: Path) -> None:
    result = invoke("data", "convert", str(DEMO), "--to", "csv", "-o", str(tmp_path / "x"))
    assert result.exit_code == 2 and "not one of" in result.output


def test_show_counts(tmp_path: Path) -> None:
    result = invoke("data", "show", str(DEMO), "--json")
    assert result.exit_code == 0
    summary = json.loads(result.output)
    records = read_records(DEMO)
    assert summary["records"] == len(records) == summary["read"]
    assert summary["multi_turn"] == sum(1 for r in records if len(r.messages) > 3)
    assert summary["roles"]["assistant"] == sum(
        1 for r in records for m in r.messages if m.role == "assistant"
    )
    table = invoke("data", "show", str(DEMO), "-n", "2")
    assert table.exit_code == 0 and "#1 demo-002" in table.output and "words per record" in table.output


@pytest.mark.slow
@pytest.mark.requires_models
def test_inspect_with_bundled_model() -> None:
    result = invoke(
        "data", "inspect", str(DEMO), "--model", "smollm2-135m-instruct", "-n", "1", "--max-length", "64"
    )
    assert result.exit_code == 0, result.output
    assert "sample 0:" in result.output and "trained tokens" in result.output
    assert re.search(r"kept\s+│?\s*(\d+)", result.output)


@pytest.mark.slow
@pytest.mark.requires_models
def test_inspect_without_chat_template_fails_clearly() -> None:
    result = invoke("data", "inspect", str(DEMO), "--model", "minilm-l6")
    assert result.exit_code == 1
    assert "minilm-l6 has no chat template" in result.output and "--chat-template" in result.output


@pytest.mark.slow
@pytest.mark.requires_models
def test_chat_replies() -> None:
    result = invoke("chat", "--prompt", "What is the capital of France?", "--max-new-tokens", "16")
    assert result.exit_code == 0, result.output
    reply = result.output.split("smollm2-135m-instruct:", 1)[1].strip()
    assert "Paris" in reply
