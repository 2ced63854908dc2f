"""Training under faults (issue #9): a killed run resumes to exactly the weights of an uninterrupted one
for every sampler, damaged checkpoints are named and the previous intact one is used, a changed config
refuses to resume, and run names cannot escape ``output_dir``. Tiny 2-layer models, real runs."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from instructkit.train.config import ConfigError, TrainConfig
from instructkit.train.training import train

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "examples" / "data" / "demo.jsonl"


def make_cfg(folder: Path, model: str, **kw) -> TrainConfig:
    raw = {
        "model": model,
        "task": "causal-lm",
        "method": {"name": "full"},
        "name": "run",
        "output_dir": str(folder),
        "data": {"train": str(DEMO), "val_share": 0.2, "max_length": 96},
        "optim": {"lr": 5e-3, "batch_size": 4, "max_steps": 8, "dropout": 0.1},
        "save_every_steps": 3,
        "logging_steps": 1,
        "bf16": "false",
    }
    for dotted, value in kw.items():
        node = raw
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return TrainConfig.from_dict(raw)


@contextlib.contextmanager
def killed_at(step: int) -> Iterator[None]:
    """Every Trainer built inside raises KeyboardInterrupt right after saving the checkpoint of ``step``
    (after every other callback's on_save, as a kill between two steps would)."""
    from transformers import Trainer, TrainerCallback

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == step:
                raise KeyboardInterrupt(f"killed after the step-{step} checkpoint")

    init = Trainer.__init__

    def init_with_kill(self, *a, **k):
        k["callbacks"] = [*(k.get("callbacks") or []), Kill()]
        init(self, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "__init__", init_with_kill)
        with pytest.raises(KeyboardInterrupt):
            yield


def assert_same_weights(a, b, atol: float = 1e-6) -> None:
    ref = dict(a.model.named_parameters())
    worst = max((p - ref[n]).abs().max().item() for n, p in b.model.named_parameters())
    assert worst <= atol, f"weights differ by up to {worst}"


# ------------------------------------------------------------------------------------ item 4: samplers
@pytest.mark.parametrize(
    "packing,group_by_length",
    [(False, True), (False, False), (True, True)],
    ids=["group-by-length", "random", "packed"],
)
@pytest.mark.slow
def test_mid_epoch_resume_is_exact_for_every_sampler(
    tmp_path: Path, tiny_llama: str, packing: bool, group_by_length: bool
) -> None:
    """32 training samples in batches of 4 = 8 steps an epoch; killed at step 10 (2 steps into epoch 1)
    and run to step 14: the resumed run must replay epoch 1's order, not draw a new one."""

    def cfg(folder: Path) -> TrainConfig:
        return make_cfg(
            folder,
            tiny_llama,
            packing=packing,
            group_by_length=group_by_length,
            save_every_steps=5,
            optim__max_steps=14,
        )

    reference = train(cfg(tmp_path / "a"), progress=False)
    with killed_at(10):
        train(cfg(tmp_path / "b"), progress=False)
    resumed = train(cfg(tmp_path / "b"), resume=True, progress=False)
    assert resumed.metrics["steps"] == reference.metrics["steps"] == 14
    assert resumed.metrics["tokens_seen"] == reference.metrics["tokens_seen"]
    assert_same_weights(reference, resumed)


# ------------------------------------------------------------------------- item 5: damaged checkpoints
@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama: str) -> tuple[Path, object]:
    """An uninterrupted 8-step run (the reference) and one killed after its step-6 checkpoint, which
    leaves checkpoint-3 and checkpoint-6 (save_total_limit 2)."""
    base = tmp_path_factory.mktemp("killed")
    reference = train(make_cfg(base / "ref", tiny_llama), progress=False)
    with killed_at(6):
        train(make_cfg(base / "killed", tiny_llama), progress=False)
    ckpts = sorted(p.name for p in (base / "killed" / "run" / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-3", "checkpoint-6"], ckpts
    return base / "killed", reference


def copy_run(killed: Path, tmp_path: Path) -> Path:
    shutil.copytree(killed, tmp_path / "k")
    return tmp_path / "k"


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(64):  # 64 bytes in the tensor data (past the header), as bit rot would
        data[len(data) // 2 + i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot json at all{{{")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE = {
    "flipped-bytes": ("model.safetensors", _flip),
    "truncated-safetensors": ("model.safetensors", _truncate),
    "garbage-trainer-state": ("trainer_state.json", _garbage),
    "corrupt-optimizer": ("optimizer.pt", _garbage),
    "corrupt-scheduler": ("scheduler.pt", _garbage),
    "deleted-optimizer": ("optimizer.pt", lambda p: p.unlink()),
    "empty-rng-state": ("rng_state.pth", _empty),
    "empty-folder": (None, None),
}


def damage(ckpt: Path, case: str) -> str | None:
    name, how = DAMAGE[case]
    if name is None:
        shutil.rmtree(ckpt)
        ckpt.mkdir()
        return None
    how(ckpt / name)
    return name


@pytest.mark.parametrize("case", list(DAMAGE))
@pytest.mark.slow
def test_damaged_last_checkpoint_falls_back_to_the_previous_intact_one(
    tmp_path: Path, tiny_llama: str, killed_run, case: str, capsys: pytest.CaptureFixture
) -> None:
    killed, reference = killed_run
    folder = copy_run(killed, tmp_path)
    broken = damage(folder / "run" / "checkpoints" / "checkpoint-6", case)
    resumed = train(make_cfg(folder, tiny_llama), resume=True, progress=False)
    out = capsys.readouterr().out
    named = [line for line in out.splitlines() if "checkpoint-6" in line and "checkpoint-3" in line]
    assert named, f"no line names the damaged and the used checkpoint:\n{out}"
    if broken:
        assert broken in named[0], named[0]
    # resumed from the intact step-3 checkpoint: exactly the uninterrupted run's weights
    assert resumed.metrics["steps"] == 8
    assert_same_weights(reference, resumed)


@pytest.mark.slow
def test_no_intact_checkpoint_is_an_error_naming_each(tmp_path: Path, tiny_llama: str, killed_run) -> None:
    from instructkit.train.checkpoints import CheckpointError

    folder = copy_run(killed_run[0], tmp_path)
    damage(folder / "run" / "checkpoints" / "checkpoint-6", "flipped-bytes")
    damage(folder / "run" / "checkpoints" / "checkpoint-3", "garbage-trainer-state")
    with pytest.raises(CheckpointError) as err:
        train(make_cfg(folder, tiny_llama), resume=True, progress=False)
    msg = str(err.value)
    assert "checkpoint-6" in msg and "model.safetensors" in msg, msg
    assert "checkpoint-3" in msg and "trainer_state.json" in msg, msg


@pytest.mark.slow
def test_missing_optimizer_state_needs_weights_only(tmp_path: Path, tiny_llama: str, killed_run) -> None:
    from instructkit.train.checkpoints import CheckpointError

    folder = copy_run(killed_run[0], tmp_path)
    for step in (3, 6):
        (folder / "run" / "checkpoints" / f"checkpoint-{step}" / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError, match="weights-only"):
        train(make_cfg(folder, tiny_llama), resume=True, progress=False)
    resumed = train(make_cfg(folder, tiny_llama), resume=True, weights_only=True, progress=False)
    assert resumed.metrics["steps"] == 8  # continued from step 6 with a fresh optimizer


def test_corrupt_stages_json_is_a_named_error(tmp_path: Path) -> None:
    from instructkit.ledger import Stages
    from instructkit.recipe import RecipeError

    (tmp_path / "stages.json").write_text('{"data": {"inputs": "ab')
    with pytest.raises(RecipeError, match="stages.json"):
        Stages(tmp_path, RecipeError)  # the runner's own error class, so its CLI shows one line
    (tmp_path / "stages.json").write_text('{"data": "not a mapping of inputs"}')
    with pytest.raises(RecipeError, match="damaged"):
        Stages(tmp_path, RecipeError)


# -------------------------------------------------------------------- item 1: resume only same inputs
@pytest.mark.slow
def test_resume_with_a_changed_config_names_the_keys(tmp_path: Path, tiny_llama: str, killed_run) -> None:
    from instructkit.train.checkpoints import CheckpointError

    folder = copy_run(killed_run[0], tmp_path)
    with pytest.raises(CheckpointError, match=r"optim\.lr") as err:
        train(make_cfg(folder, tiny_llama, optim__lr=1e-3), resume=True, progress=False)
    assert "optim.batch_size" not in str(err.value)
    data = tmp_path / "other.jsonl"
    data.write_text("".join(DEMO.read_text().splitlines(keepends=True)[:30]))
    with pytest.raises(CheckpointError, match=r"data\.train"):
        train(make_cfg(folder, tiny_llama, data__train=str(data)), resume=True, progress=False)


# --------------------------------------------------------------------------- item 6: run folder escape
@pytest.mark.parametrize("name", ["../../x", "../x", "a/b", "a\\b", ".", "..", "", "a\0b"])
def test_run_name_is_one_path_component(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="'name'"):
        TrainConfig.from_dict({"data": {"train": "x"}, "name": name, "output_dir": str(tmp_path)})


@pytest.mark.slow
def test_run_folder_must_be_a_run_folder(
    tmp_path: Path, tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="output_dir.*name|name.*output_dir"):
        train(make_cfg(tmp_path, tiny_llama, name="project"), progress=False)
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["notes.txt"]

    from instructkit.train.rundir import check_run_folder

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(home)
    assert "home" in (check_run_folder(tmp_path / "out" / "link", ("config.yaml",)) or "")
    assert "/" in (check_run_folder(Path("/"), ("config.yaml",)) or "")

    # a rerun into an existing run folder is accepted
    first = train(make_cfg(tmp_path, tiny_llama, name="again", optim__max_steps=2), progress=False)
    second = train(make_cfg(tmp_path, tiny_llama, name="again", optim__max_steps=2), progress=False)
    assert first.run_dir == second.run_dir and second.metrics["steps"] == 2


def test_cli_train_refuses_an_escaping_name(tmp_path: Path, tiny_llama: str) -> None:
    from typer.testing import CliRunner

    from instructkit.cli import app

    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(make_cfg(tmp_path / "out", tiny_llama, optim__max_steps=1).to_dict()))
    out = CliRunner().invoke(app, ["train", str(cfg), "--name", "../../x"])
    assert out.exit_code == 1 and "'name'" in out.output and "Traceback" not in out.output, out.output
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_weights_only_skips_state_files(tmp_path: Path) -> None:
    """A checkpoint whose optimizer state is gone verifies for a weights-only resume and not otherwise."""
    from instructkit.train.checkpoints import verify, write_manifest

    ckpt = tmp_path / "checkpoint-1"
    ckpt.mkdir()
    for name in ("model.safetensors", "trainer_state.json", "optimizer.pt", "scheduler.pt"):
        (ckpt / name).write_bytes(name.encode())
    write_manifest(ckpt, {"config": {}, "data": {}})
    assert verify(ckpt) is None
    (ckpt / "optimizer.pt").unlink()
    assert "optimizer.pt" in (verify(ckpt) or "")
    assert verify(ckpt, weights_only=True) is None
    (ckpt / "trainer_state.json").write_text("{}")
    assert "trainer_state.json" in (verify(ckpt, weights_only=True) or "")


@pytest.mark.slow
def test_save_total_limit_one_has_no_fallback(tmp_path: Path, tiny_llama: str) -> None:
    """With one checkpoint kept there is nothing to fall back to: a clear error, not a traceback."""
    from instructkit.train.checkpoints import CheckpointError

    with killed_at(6):
        train(make_cfg(tmp_path, tiny_llama, save_total_limit=1), progress=False)
    ckpts = tmp_path / "run" / "checkpoints"
    assert [p.name for p in ckpts.iterdir()] == ["checkpoint-6"]  # rotated once step 6 was complete
    damage(ckpts / "checkpoint-6", "flipped-bytes")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint.*\n.*checkpoint-6: model\.safetensors"):
        train(make_cfg(tmp_path, tiny_llama, save_total_limit=1), resume=True, progress=False)


@pytest.mark.slow
def test_cli_resume_errors_and_weights_only(tmp_path: Path, tiny_llama: str, killed_run) -> None:
    from typer.testing import CliRunner

    from instructkit.cli import app

    folder = copy_run(killed_run[0], tmp_path)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(make_cfg(folder, tiny_llama, optim__lr=1e-3).to_dict()))
    out = CliRunner().invoke(app, ["train", str(cfg), "--resume"])
    assert out.exit_code == 1 and "optim.lr" in out.output and "Traceback" not in out.output, out.output

    cfg.write_text(yaml.safe_dump(make_cfg(folder, tiny_llama).to_dict()))
    for step in (3, 6):
        (folder / "run" / "checkpoints" / f"checkpoint-{step}" / "scheduler.pt").unlink()
    out = CliRunner().invoke(app, ["train", str(cfg), "--resume"])
    assert out.exit_code == 1 and "--resume-weights-only" in out.output, out.output
    out = CliRunner().invoke(app, ["train", str(cfg), "--resume-weights-only"])
    assert out.exit_code == 0, out.output
    assert "checkpoint-6 (weights only)" in out.output.replace("\n", "")
