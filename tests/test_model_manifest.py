"""Final model folders carry a checksum manifest, checked before anything uses them.

The reproduction of the failure this guards against: a run's final adapter with bytes flipped near its end
loaded fine (safetensors checks its header, not the tensor bytes), and ``instructkit export`` compared the
export against that same damaged adapter, printed "verified", and wrote weights of 1e7. Each test damages a
real saved folder (written by ``save_trained``, the function ``instructkit train`` ends with) the way a
disk, a copy or a user does, and asserts the one-line error that names the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.models import ModelFolderError, load_model, resolve
from instructkit.models.manifest import MANIFEST, gguf_sidecar, read_manifest, verify_gguf
from instructkit.serve.export import export_run
from instructkit.train.saved_model import load_trained
from tests.test_export import make_run, one_thread  # noqa: F401 - autouse: tiny models on one thread

ADAPTER = "adapter_model.safetensors"


@pytest.fixture
def lora_run(tiny_llama: str, tmp_path: Path) -> Path:
    return make_run(tiny_llama, tmp_path / "run", "lora", r=4)


def flip_near_end(path: Path, n: int = 16) -> None:
    """Flip ``n`` bytes a little before the end: inside the last tensor's data, past the header."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 64, len(data) - 64 + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_folder(model_dir: Path, damage: str) -> None:
    if damage == "truncate":
        (model_dir / ADAPTER).write_bytes((model_dir / ADAPTER).read_bytes()[:100])
    elif damage == "delete":
        (model_dir / ADAPTER).unlink()
    else:
        (model_dir / "instructkit.json").write_text("{not json")


def one_line_error(result) -> str:
    out = result.output
    assert result.exit_code == 1, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, out
    return errors[0]


def test_the_final_model_folder_lists_every_file(lora_run: Path) -> None:
    model_dir = lora_run / "model"
    doc = read_manifest(model_dir)
    assert doc is not None
    on_disk = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.name != MANIFEST)
    assert sorted(doc["files"]) == on_disk
    assert ADAPTER in doc["files"] and "instructkit.json" in doc["files"]
    load_trained(lora_run)  # intact: loads


def test_export_refuses_an_adapter_with_flipped_bytes(lora_run: Path, tmp_path: Path) -> None:
    adapter = lora_run / "model" / ADAPTER
    flip_near_end(adapter)
    # what the damage would have done, had it loaded: the adapter still parses
    from safetensors.torch import load_file

    assert load_file(adapter)  # safetensors alone does not notice
    out = tmp_path / "export"
    with pytest.raises(ModelFolderError, match=rf"{ADAPTER} does not match its checksum"):
        export_run(lora_run, out, merge=True)
    assert not out.exists()

    result = CliRunner().invoke(app, ["export", str(lora_run), "-o", str(out), "--merge"])
    line = one_line_error(result)
    assert ADAPTER in line and "verified" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("truncate", f"{ADAPTER} has"),
        ("delete", f"{ADAPTER} is missing"),
        ("garbage-info", "instructkit.json has 9 bytes"),
    ],
)
def test_every_user_of_a_damaged_run_says_which_file(
    lora_run: Path, tmp_path: Path, damage: str, expected: str
) -> None:
    model_dir = lora_run / "model"
    damage_folder(model_dir, damage)
    runner = CliRunner()
    export = runner.invoke(app, ["export", str(lora_run), "-o", str(tmp_path / "x"), "--merge"])
    assert expected in one_line_error(export)
    chat = runner.invoke(app, ["chat", str(lora_run), "--prompt", "hi"])
    assert expected in one_line_error(chat)
    data = tmp_path / "eval.jsonl"
    data.write_text(
        json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
        + "\n"
    )
    ev = runner.invoke(
        app, ["eval", "--model", str(lora_run), "--data", str(data), "-o", str(tmp_path / "ev")]
    )
    assert expected in one_line_error(ev)


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("truncate", "cannot be loaded"),
        ("delete", f"{ADAPTER} is missing"),
        ("garbage-info", "instructkit.json: not valid JSON"),
    ],
)
def test_a_run_without_a_manifest_still_fails_in_one_line(
    lora_run: Path, tmp_path: Path, damage: str, expected: str
) -> None:
    """A folder saved before manifests existed: nothing to check against, but a damaged file is still one
    line (no SafetensorError, no 'Repo id must be' from PEFT, no JSONDecodeError traceback)."""
    model_dir = lora_run / "model"
    (model_dir / MANIFEST).unlink()
    damage_folder(model_dir, damage)
    result = CliRunner().invoke(app, ["export", str(lora_run), "-o", str(tmp_path / "x"), "--merge"])
    line = one_line_error(result)
    assert expected in line, line
    assert "Repo id" not in line


def test_an_intact_run_without_a_manifest_exports_with_a_warning(lora_run: Path, tmp_path: Path) -> None:
    (lora_run / "model" / MANIFEST).unlink()
    result = export_run(lora_run, tmp_path / "x", merge=True)
    assert not result.source_verified
    assert "no checksum manifest" in result.summary()


def test_an_export_carries_its_own_manifest_and_is_checked_on_load(lora_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = export_run(lora_run, out, merge=True)
    assert result.source_verified and result.manifest == out / MANIFEST
    assert "matched its checksum manifest" in result.summary()
    doc = read_manifest(out)
    assert doc is not None and "model.safetensors" in doc["files"] and "instructkit.json" in doc["files"]
    assert load_model(str(out)) is not None  # intact: loads

    flip_near_end(out / "model.safetensors")
    with pytest.raises(ModelFolderError, match="model.safetensors does not match its checksum"):
        resolve(str(out))
    runner = CliRunner()
    line = one_line_error(runner.invoke(app, ["chat", str(out), "--prompt", "hi"]))
    assert "model.safetensors" in line


def test_a_gguf_export_has_a_sha256sum_sidecar(lora_run: Path, tmp_path: Path) -> None:
    import hashlib

    out = tmp_path / "model.gguf"
    result = export_run(lora_run, out, merge=True, fmt="gguf")
    side = gguf_sidecar(out)
    assert result.manifest == side and side.is_file()
    digest, name = side.read_text().split()
    assert name == out.name and digest == hashlib.sha256(out.read_bytes()).hexdigest()
    assert verify_gguf(out)
    flip_near_end(out)
    with pytest.raises(ModelFolderError, match="does not match the checksum"):
        resolve(str(out))


def test_serve_refuses_a_damaged_adapter(lora_run: Path, tiny_llama: str) -> None:
    from instructkit.serve.loading import load_served

    flip_near_end(lora_run / "model" / ADAPTER)
    with pytest.raises(ModelFolderError, match=ADAPTER):
        load_served(tiny_llama, {"mine": str(lora_run)})


def test_a_damaged_teacher_stops_continual_use(lora_run: Path) -> None:
    """Continual rounds reload the previous round's model with load_trained (LwF's teacher, scoring)."""
    flip_near_end(lora_run / "model" / ADAPTER)
    with pytest.raises(ModelFolderError, match=ADAPTER):
        load_trained(lora_run / "model")


@pytest.mark.slow
def test_a_trained_run_with_a_damaged_adapter_is_not_exported(tiny_llama: str, tmp_path: Path) -> None:
    """The reproduction end to end: `instructkit train` (LoRA, a few steps), bytes flipped near the end of
    the final adapter, `instructkit export --merge`: one line naming the adapter, nothing written."""
    from instructkit.train.training import train
    from tests.test_train import DEMO, make_cfg

    cfg = make_cfg(tmp_path, tiny_llama, "causal-lm", DEMO, {"name": "lora", "r": 4}, max_steps=2)
    run = train(cfg, progress=False).run_dir
    flip_near_end(run / "model" / ADAPTER)
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", str(run), "-o", str(out), "--merge"])
    assert ADAPTER in one_line_error(result) and "verified" not in result.output
    assert not out.exists()
