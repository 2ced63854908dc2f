"""Writes that cannot destroy (issue #9): an output or rejects file never replaces an input or the
other output, nothing the command did not write is deleted, read-level rejects keep their source text,
a curate folder and convert's output + rejects pair are committed as a unit (an interrupt at any file
boundary leaves the old set or the new set), and files get the user's umask.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.data.pipeline import CurateConfig, curate
from instructkit.formats import RecordReader

from .test_bad_input import AL, COUNTS, ENV, OA, around, conll, json_array, jsonl

runner = CliRunner()

BAD_LINE = b'{"messages": [}'  # malformed JSON: a read-level reject
CLEAN = jsonl(*OA)  # 3 good records
DIRTY = jsonl(*around(OA, BAD_LINE))  # 3 good, line 3 bad
STEPS_YAML = "steps: [normalize, empty]\n"  # a tiny pipeline: the tests are about files, not filters


def convert(*args: str):
    return runner.invoke(app, ["data", "convert", *args], env=ENV)


def curate_cli(*args: str):
    Path("steps.yaml").write_text(STEPS_YAML)
    return runner.invoke(app, ["data", "curate", *args, "--config", "steps.yaml"], env=ENV)


def named_error(result, *words: str) -> None:
    """Exit 1 with one 'error:' line naming ``words``, and no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "error:" in result.output and "Traceback" not in result.output, result.output
    for w in words:
        assert w in result.output, (w, result.output)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # short relative paths: nothing for the console to wrap
    return tmp_path


# ----------------------------------------------------------------- convert: collisions and deletion
@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_convert_with_no_rejects_never_deletes_the_input_named_as_rejects(here: Path, mode: str) -> None:
    Path("in.jsonl").write_bytes(CLEAN)
    result = convert(
        "in.jsonl", "--to", "openai", "-o", "out.jsonl", "--rejects", "in.jsonl", "--on-error", mode
    )
    named_error(result, "--rejects", "in.jsonl", "input")
    assert Path("in.jsonl").read_bytes() == CLEAN  # today: deleted as a "stale rejects file"
    assert not Path("out.jsonl").exists()


def test_convert_never_replaces_a_file_at_the_rejects_path_that_is_not_a_rejects_file(here: Path) -> None:
    notes = b'{"todo": "keep me"}\n'
    Path("in.jsonl").write_bytes(CLEAN)
    Path("notes.jsonl").write_bytes(notes)
    result = convert("in.jsonl", "--to", "openai", "-o", "out.jsonl", "--rejects", "notes.jsonl")
    named_error(result, "notes.jsonl", "not a rejects file")
    assert Path("notes.jsonl").read_bytes() == notes  # today: deleted
    # The default rejects path holding someone's file: skip mode refuses, raise mode leaves it be.
    Path("out.rejects.jsonl").write_bytes(notes)
    named_error(
        convert("in.jsonl", "--to", "openai", "-o", "out.jsonl", "--on-error", "skip"), "out.rejects.jsonl"
    )
    result = convert("in.jsonl", "--to", "openai", "-o", "out.jsonl")
    assert result.exit_code == 0, result.output
    assert Path("out.rejects.jsonl").read_bytes() == notes  # today: deleted


def test_convert_rejects_equal_to_output_is_refused(here: Path) -> None:
    Path("in.jsonl").write_bytes(DIRTY)
    Path("sub").mkdir()
    for spelling in ("out.jsonl", "./sub/../out.jsonl"):
        result = convert(
            "in.jsonl", "--to", "openai", "-o", "out.jsonl", "--rejects", spelling, "--on-error", "skip"
        )
        named_error(result, "--output", "--rejects", "same file")
        assert not Path("out.jsonl").exists()  # today: the rejects land in out.jsonl, "written 3"


@pytest.mark.parametrize("flag", ["--rejects", "-o"])
@pytest.mark.parametrize("spelling", ["in.jsonl", "./in.jsonl", "sub/../in.jsonl"])
def test_convert_never_writes_over_its_input(here: Path, flag: str, spelling: str) -> None:
    Path("in.jsonl").write_bytes(DIRTY)
    Path("sub").mkdir()
    other = ["--rejects", "r.jsonl"] if flag == "-o" else ["-o", "out.jsonl"]
    result = convert("in.jsonl", "--to", "openai", flag, spelling, *other, "--on-error", "skip")
    named_error(result, "input")
    assert Path("in.jsonl").read_bytes() == DIRTY  # today: replaced, and the bad line's text is gone


def test_convert_to_a_new_output_still_works_and_says_so(here: Path) -> None:
    Path("in.jsonl").write_bytes(DIRTY)
    result = convert("in.jsonl", "--to", "openai", "-o", "out.jsonl", "--on-error", "skip")
    assert result.exit_code == 0 and COUNTS.search(result.output).groups() == ("4", "3", "1")
    again = convert("in.jsonl", "--to", "openai", "-o", "out.jsonl", "--on-error", "skip")
    assert again.exit_code == 0, again.output  # rerunning over its own output and rejects is fine
    assert len(Path("out.rejects.jsonl").read_text().splitlines()) == 1


# ----------------------------------------------------------------- read-level rejects keep their text
RAW_CASES = [
    pytest.param("x.jsonl", DIRTY, None, [BAD_LINE.decode()], id="jsonl_malformed_line"),
    pytest.param(
        "x.jsonl",
        jsonl(*around(OA, b'{"messages": "caf\xe9"}')),
        None,
        ['{"messages": "caf\\xe9"}'],
        id="jsonl_undecodable_line",
    ),
    pytest.param(
        "x.json",
        json_array(*around(AL, b'{"instruction": "x\xff", "input": "", "output": "y"}')),
        None,
        ['{"instruction": "x\\xff", "input": "", "output": "y"}'],
        id="json_array_undecodable_element",
    ),
    pytest.param(
        "x.json",
        json_array(*around(AL, b'{"instruction": "x" "output": "y"}')),
        None,
        ['{"instruction": "x" "output": "y"},\n' + json.dumps(AL[2]) + "\n]\n"],  # the rest of the file
        id="json_array_malformed_element_keeps_the_unreadable_rest",
    ),
    pytest.param(
        "x.conll",
        conll(b"Paris B-LOC\nis\xff O\n"),
        None,
        ["Paris B-LOC\nis\\xff O"],
        id="conll_undecodable_block",
    ),
    pytest.param(
        "x.conll", conll(b"Paris B-LOC\nis X-PER\n"), None, ["Paris B-LOC\nis X-PER"], id="conll_bad_tag"
    ),
]


@pytest.mark.parametrize("name,content,fmt,raws", RAW_CASES)
def test_read_rejects_keep_the_source_text(
    here: Path, name: str, content: bytes, fmt: str | None, raws
) -> None:
    Path(name).write_bytes(content)
    reader = RecordReader(name, fmt=fmt, on_error="skip")
    records = list(reader)
    assert [r["raw"] for r in reader.rejects] == raws
    assert reader.n_read == len(records) + len(reader.rejects)
    # and the rejects file the CLI writes holds the same text
    to = "conll" if name.endswith(".conll") else "openai" if name.endswith(".jsonl") else "alpaca"
    out = "out.conll" if to == "conll" else "out.jsonl"
    result = convert(name, "--to", to, "-o", out, "--on-error", "skip")
    assert result.exit_code == 0, result.output
    written = [json.loads(line)["raw"] for line in Path("out.rejects.jsonl").read_text("utf-8").splitlines()]
    assert written == raws


# ----------------------------------------------------------------- curate: the output folder
def test_curate_into_the_folder_holding_its_input_is_refused(here: Path) -> None:
    Path("data").mkdir()
    for name in ("train.jsonl", "raw.jsonl"):
        Path("data", name).write_bytes(DIRTY)
        result = curate_cli(f"data/{name}", "-o", "data")
        named_error(result, "data", name, "holds the input")
        assert Path("data", name).read_bytes() == DIRTY  # today: train.jsonl becomes the train split
        Path("data", name).unlink()


def test_curate_output_naming_a_file_is_a_named_error(here: Path) -> None:
    Path("in.jsonl").write_bytes(CLEAN)
    Path("notes.txt").write_text("mine")
    result = curate_cli("in.jsonl", "-o", "notes.txt")
    named_error(result, "notes.txt", "is a file")  # today: a FileExistsError traceback
    assert Path("notes.txt").read_text() == "mine"
    named_error(curate_cli("in.jsonl", "-o", "notes.txt/curated"), "notes.txt", "is a file")


def test_curate_refuses_a_folder_holding_files_it_did_not_write(here: Path) -> None:
    Path("in.jsonl").write_bytes(CLEAN)
    Path("out").mkdir()
    Path("out", "notes.txt").write_text("mine")
    named_error(curate_cli("in.jsonl", "-o", "out"), "out", "notes.txt")
    assert Path("out", "notes.txt").read_text() == "mine"
    # A folder holding a previous curate's output is replaced whole, nothing left beside it.
    Path("out", "notes.txt").unlink()
    assert curate_cli("in.jsonl", "-o", "out").exit_code == 0
    Path("in2.jsonl").write_bytes(DIRTY)
    result = curate_cli("in2.jsonl", "-o", "out")
    assert result.exit_code == 0, result.output
    assert json.loads(Path("out", "card.json").read_text())["accounting"]["in"] == 4
    assert sorted(p.name for p in here.iterdir() if p.name.startswith(".")) == []


# ----------------------------------------------------------------- interrupts at every file boundary
def snapshot(folder: Path, names: list[str] | None = None) -> dict[str, bytes]:
    """Every file of ``folder`` (or just ``names``) by name, with its bytes."""
    if names is not None:
        return {n: (folder / n).read_bytes() for n in names if (folder / n).exists()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def restore(folder: Path, files: dict[str, bytes]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)


class Renames:
    """Wraps os.replace and os.rename (every rename a commit makes) for renames into ``root``: counts
    them, and at the k-th one interrupts in one of three ways:

    * ``sigint``: a real SIGINT right after the k-th rename (Ctrl-C at that file boundary);
    * ``interrupt``: KeyboardInterrupt instead of the k-th rename;
    * ``killed``: the k-th and every later rename fail, as if the process had died there.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, k: int = 0, how: str = "count"):
        self.root, self.k, self.how, self.n = str(root), k, how, 0
        for name in ("replace", "rename"):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(real))

    def _wrap(self, real: Callable) -> Callable:
        def call(src, dst, *args, **kw):
            if not os.path.abspath(dst).startswith(self.root):
                return real(src, dst, *args, **kw)
            self.n += 1
            if self.how == "interrupt" and self.n == self.k:
                raise KeyboardInterrupt
            if self.how == "killed" and self.n >= self.k:
                raise KeyboardInterrupt
            out = real(src, dst, *args, **kw)
            if self.how == "sigint" and self.n == self.k:
                signal.raise_signal(signal.SIGINT)
            return out

        return call


HOW = ["sigint", "interrupt", "killed"]


@pytest.fixture(autouse=True)
def _ctrl_c_interrupts() -> Iterator[None]:
    """Python's own Ctrl-C handler for these tests: a process started in the background by a
    non-interactive shell inherits SIGINT ignored, and Python then installs no handler, so a real SIGINT
    would do nothing whatever the code under test does."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _curate_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = CurateConfig(steps=["normalize", "empty"])
    old_in, new_in = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old_in.write_bytes(jsonl(*[{"messages": OA[0]["messages"], "meta": {"id": f"o{i}"}} for i in range(12)]))
    new_in.write_bytes(jsonl(*[{"messages": OA[1]["messages"], "meta": {"id": f"n{i}"}} for i in range(20)]))
    out = tmp_path / "runs" / "data"
    curate([new_in], out, cfg)
    new = snapshot(out)
    shutil.rmtree(out)
    curate([old_in], out, cfg)
    old = snapshot(out)
    with monkeypatch.context() as m:
        spy = Renames(m, tmp_path)
        curate([new_in], out, cfg)
    assert snapshot(out) == new != old
    return cfg, new_in, out, old, new, spy.n


@pytest.mark.parametrize("how", HOW)
def test_curate_interrupted_at_each_file_boundary_leaves_the_old_or_the_new_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    cfg, new_in, out, old, new, n = _curate_sets(tmp_path, monkeypatch)
    assert n >= 6  # six files (train, val, test, rejects, card.json, card.md), then the swap
    seen = set()
    for k in range(1, n + 1):
        restore(out, old)
        with monkeypatch.context() as m:
            Renames(m, tmp_path, k, how)
            with pytest.raises(KeyboardInterrupt):
                curate([new_in], out, cfg)
        if how == "killed":
            from instructkit.files import recover_folder

            recover_folder(out)  # what the next curate (or run) does first
        got = snapshot(out)
        assert got in (old, new), f"a mixed folder after an interrupt at rename {k}: {sorted(got)}"
        seen.add("new" if got == new else "old")
        leftovers = [p.name for p in out.parent.iterdir() if p.name != "data"]
        assert leftovers == [], leftovers
    assert "old" in seen  # an interrupt before the swap keeps the old folder


def _convert_sets(here: Path, monkeypatch: pytest.MonkeyPatch):
    Path("new.jsonl").write_bytes(jsonl(*around(OA, BAD_LINE, 0), b"{nope", openai_like(7)))
    Path("old.jsonl").write_bytes(DIRTY)
    args = ["-o", "out.jsonl", "--to", "openai", "--on-error", "skip"]
    names = ["out.jsonl", "out.rejects.jsonl"]
    assert convert("new.jsonl", *args).exit_code == 0
    new = snapshot(here, names)
    assert convert("old.jsonl", *args).exit_code == 0
    old = snapshot(here, names)
    with monkeypatch.context() as m:
        spy = Renames(m, here)
        assert convert("new.jsonl", *args).exit_code == 0
    assert snapshot(here, names) == new and set(new) == set(old) == set(names) and new != old
    return args, names, old, new, spy.n


def openai_like(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": f"A{i}."}]}


@pytest.mark.parametrize("how", HOW)
def test_convert_interrupted_at_each_file_boundary_leaves_the_old_or_the_new_pair(
    here: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    args, names, old, new, n = _convert_sets(here, monkeypatch)
    assert n >= 2
    for k in range(1, n + 1):
        for name, data in old.items():
            Path(name).write_bytes(data)
        with monkeypatch.context() as m:
            Renames(m, here, k, how)
            result = convert("new.jsonl", *args)
        assert result.exit_code != 0  # interrupted: "Aborted"
        if how == "killed":
            from instructkit.files import commit_journal, recover_commit

            recover_commit(commit_journal(Path("out.jsonl")))  # what the next convert to out.jsonl does first
        got = snapshot(here, names)
        assert got in (old, new), f"a mixed pair after an interrupt at rename {k}"
        hidden = [p.name for p in here.iterdir() if p.name.startswith(".")]
        assert hidden == [], hidden  # no temp or journal left behind


# ----------------------------------------------------------------- permissions
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(here: Path, umask: int, mode: int) -> None:
    Path("in.jsonl").write_bytes(DIRTY)
    old = os.umask(umask)
    try:
        assert convert("in.jsonl", "--to", "openai", "-o", "out.jsonl", "--on-error", "skip").exit_code == 0
        assert curate_cli("in.jsonl", "-o", "curated").exit_code == 0
    finally:
        os.umask(old)
    for path in [Path("out.jsonl"), Path("out.rejects.jsonl"), *Path("curated").iterdir()]:
        assert path.stat().st_mode & 0o777 == mode, (path, oct(path.stat().st_mode))  # today: 0600
    assert Path("curated").stat().st_mode & 0o777 == 0o777 & ~umask  # a folder: 0755 under 022


def test_curate_into_the_current_folder_is_refused(here: Path) -> None:
    Path("sub").mkdir()
    Path("in.jsonl").write_bytes(CLEAN)
    named_error(curate_cli(str(here / "in.jsonl"), "-o", "."), "current folder")
    named_error(curate_cli("in.jsonl", "-o", str(here.parent)), "current folder")
    assert Path("in.jsonl").read_bytes() == CLEAN and Path("sub").is_dir()
