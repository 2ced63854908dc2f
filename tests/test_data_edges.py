"""Data at its edges (issue #21): a curate that keeps no record (an empty file, a binary file, a UTF-16 file)
still writes its card, rejects and empty splits and says so in one line (exit code 3); ``instructkit run``
stops before the model when a split it needs is empty; ``generate evol --in`` names a folder it was given.
All through the CLI (typer's CliRunner) on real files."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.recipe import Recipe, RecipeError, run_recipe

from .conftest import REAL_HOME
from .test_run_faults import DEMO, write_recipe

CHAT = (
    '{"messages": [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Red."}]}\n'
)


def write_input(kind: str, folder: Path) -> Path:
    """A real input no record survives: empty, binary (seeded random bytes) or UTF-16 JSON lines (what a
    Windows editor saves as "Unicode")."""
    if kind == "empty":
        path = folder / "empty.jsonl"
        path.write_bytes(b"")
    elif kind == "binary":
        path = folder / "blob.bin"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(0).randbytes(4000))
    else:
        path = folder / "utf16.jsonl"
        path.write_bytes((CHAT * 3).encode("utf-16"))
    return path


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------- curate keeps nothing


@pytest.mark.parametrize("kind", ["empty", "binary", "utf16"])
def test_curate_that_keeps_no_record_writes_the_card_and_rejects_and_says_so(
    tmp_path: Path, kind: str
) -> None:
    path = write_input(kind, tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["data", "curate", str(path), "-o", str(out)])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    said = lines(result.output)
    assert len(said) == 1 and said[0].startswith("error: no record was kept"), result.output
    assert str(out) in said[0]

    card = json.loads((out / "card.json").read_text())
    acc = card["accounting"]
    assert acc["kept"] == 0 and acc["balanced"] and acc["in"] == acc["kept"] + acc["rejected"]
    rejects = (out / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == acc["rejected"]
    assert all(json.loads(r)["step"] == "read" for r in rejects)
    assert {name: (out / f"{name}.jsonl").read_text() for name in ("train", "val", "test")} == dict.fromkeys(
        ("train", "val", "test"), ""
    )
    assert (out / "card.md").is_file()
    if kind == "empty":
        assert acc["in"] == 0 and "hold no records" in said[0]
    else:  # every line came in and was rejected on read, with the bytes' reason
        assert acc["in"] > 0 and "undecodable_bytes" in card["rejected_by_reason"]
        assert "could be read" in said[0] and "UTF-8" in said[0]


def test_curate_whose_steps_drop_every_record_says_so_too(tmp_path: Path) -> None:
    """Records read but all dropped by a step (here: every reply a refusal): the same card, line and code."""
    path = tmp_path / "refusals.jsonl"
    path.write_text(
        "".join(
            CHAT.replace("Name a color.", f"Name color {i}.").replace(
                "Red.", "I'm sorry, but I can't help with that."
            )
            for i in range(5)
        )
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["data", "curate", str(path), "-o", str(out)])
    assert result.exit_code == 3, result.output
    said = [line for line in lines(result.output) if "examples/s" not in line]  # the steps' progress bars
    assert len(said) == 1 and "5 records in, all rejected (refusal 5)" in said[0], result.output
    card = json.loads((out / "card.json").read_text())
    assert card["accounting"] == {"in": 5, "kept": 0, "rejected": 5, "balanced": True}
    # the steps after the one that dropped everything saw nothing: in 0, kept 0
    assert [s["in"] for s in card["steps"]][-1] == 0


def test_curate_help_documents_the_exit_codes() -> None:
    result = CliRunner().invoke(app, ["data", "curate", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "Exit codes: 0 curated; 1 an error" in text and "3 curated, but no record was kept" in text


# ------------------------------------------------------------------------------ run: a needed split is empty


def _recipe(tmp_path: Path, tiny_llama: str, data: Path, split: dict) -> Path:
    # a one-step curate keeps the data stage to a second; the split is what the case is about
    return write_recipe(tmp_path, tiny_llama, data, curate={"steps": ["normalize"], "split": split})


@pytest.mark.parametrize(
    "case, split, expected",
    [
        (
            "no-test",
            {"val": 0.1, "test": 0.0},
            "the curated test split is empty (0 of 40 kept records; curate split: val 0.1, test 0.0, train the "
            "rest) and stage before (the evaluation before training) needs it; raise curate's split.test",
        ),
        (
            "no-train",
            {"val": 0.0, "test": 0.5},
            "the curated train split is empty (0 of 1 kept records; curate split: val 0.0, test 0.5, train the "
            "rest) and stage train needs it; lower split.val or split.test",
        ),
        (
            "nothing-kept",
            {"val": 0.1, "test": 0.2},
            "the curated test split is empty (no record was kept: none of",
        ),
    ],
    ids=["no-test", "no-train", "nothing-kept"],
)
def test_run_stops_before_the_model_when_a_split_it_needs_is_empty(
    tmp_path: Path, tiny_llama: str, case: str, split: dict, expected: str
) -> None:
    if case == "no-train":  # one record: the test share takes it
        data = tmp_path / "one.jsonl"
        data.write_text(DEMO.read_text().splitlines(keepends=True)[0])
    elif case == "nothing-kept":
        data = write_input("utf16", tmp_path)
    else:
        data = DEMO
    path = _recipe(tmp_path, tiny_llama, data, split)
    with pytest.raises(RecipeError) as err:
        run_recipe(Recipe.from_yaml(path), recipe_path=path, progress=False, log=lambda _: None)
    assert str(err.value).startswith(expected), str(err.value)
    run_dir = tmp_path / "runs" / "r"
    assert not (run_dir / "eval").exists() and not (run_dir / "train").exists()
    assert list(json.loads((run_dir / "stages.json").read_text())) == ["data"]


def test_cli_run_with_an_empty_test_split_stops_with_one_line(tmp_path: Path, tiny_llama: str) -> None:
    path = _recipe(tmp_path, tiny_llama, DEMO, {"val": 0.1, "test": 0.0})
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "no records to evaluate" not in result.output
    error = [line for line in lines(result.output) if line.startswith("error:")]
    assert len(error) == 1 and "the curated test split is empty (0 of 40 kept records" in error[0], (
        result.output
    )
    assert "[before] running" not in result.output


# ----------------------------------------------------------------------------- generate evol --in a folder


@pytest.mark.parametrize("what", ["folder", "missing"])
def test_generate_evol_in_a_folder_or_missing_file_is_one_line(tmp_path: Path, what: str) -> None:
    given = tmp_path / "prompts" if what == "folder" else tmp_path / "nope.jsonl"
    if what == "folder":
        given.mkdir()
        (given / "a.jsonl").write_text(CHAT)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", "evol", "--in", str(given), "-o", str(out)])
    assert result.exit_code == 2, result.output
    said = lines(result.output)
    why = "is a folder, not a file" if what == "folder" else "no such file"
    assert said == [f"error: --in {given}: {why}"], result.output
    assert not out.exists()  # stopped before the run started


# -------------------------------------------------------------------------------------- the suite's own HOME


def test_the_suite_runs_with_a_temporary_home_and_the_real_caches() -> None:
    """conftest's pytest_configure: HOME is a fresh folder, the caches are the real ones (the bundled models'
    converted weights are not rebuilt every session)."""
    from instructkit.models.registry import cache_root

    assert Path.home() != REAL_HOME and Path.home().name.startswith("instructkit-tests-home-")
    for cache in (cache_root(), Path(os.environ["HF_HOME"]), Path(os.environ["XDG_CACHE_HOME"])):
        assert not cache.is_relative_to(Path.home()), cache
