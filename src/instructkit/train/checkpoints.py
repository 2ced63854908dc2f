"""Checkpoints that can be trusted: a checksum manifest per checkpoint, verified before a resume.

HF ``Trainer`` writes a checkpoint as loose files (weights, ``optimizer.pt``, ``scheduler.pt``,
``rng_state.pth``, ``trainer_state.json``) and on resume loads whatever it finds: flipped bytes in the
weights load silently, a missing ``optimizer.pt`` silently restarts AdamW, and a truncated file ends in a
traceback (an empty ``rng_state.pth`` aborts the process). So each checkpoint gets
``instructkit-manifest.json`` with the sha256 of every file and the inputs it was trained with (the
config and the content hashes of the data). The manifest is written last, atomically, so a checkpoint
without one is incomplete. A resume takes the newest checkpoint that verifies, says which ones it
skipped and why, and refuses checkpoints made under other inputs (a silent mix of two runs).

Rotation (``save_total_limit``) runs here, after the manifest, instead of inside the Trainer's save:
the older checkpoint is deleted only once the new one is complete, so a kill during a save always
leaves an intact checkpoint to fall back to.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from instructkit.files import sha256_file
from instructkit.models import manifest

MANIFEST = manifest.MANIFEST
# Training state that a weights-only resume does without (the Trainer starts them fresh).
STATE_FILES = re.compile(r"^(optimizer\.pt|optimizer\.bin|scheduler\.pt|scaler\.pt|rng_state(_\d+)?\.pth)$")
# Keys that may change between a run and its resume: where the run lives, how often it logs, how many
# checkpoints it keeps. Data file paths are compared by content instead (a moved folder still resumes).
MAY_CHANGE = {"name", "output_dir", "logging_steps", "save_total_limit", "resume_weights_only"}
DATA_FILES = ("data.train", "data.val", "data.test", "data.chat_template")
_STEP = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class CheckpointError(ValueError):
    """No checkpoint can be resumed; the message names each one and why. ``changes`` lists the changed
    inputs when the reason is a changed config or data (empty when every checkpoint is damaged)."""

    def __init__(self, message: str, changes: list[str] | None = None):
        super().__init__(message)
        self.changes = changes or []


def run_inputs(config: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's training depended on: the config and the bytes of the files it names."""
    data = {}
    for key in DATA_FILES:
        section, field = key.split(".")
        value = config.get(section, {}).get(field)
        data[key] = sha256_file(Path(value)) if value and Path(value).is_file() else None
    return {"config": config, "data": data}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_keys(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted config keys (and ``data.*`` files by content) that differ between two ``run_inputs``."""
    a, b = _flatten(saved.get("config", {})), _flatten(current.get("config", {}))
    changes = []
    for key in sorted(set(a) | set(b)):
        if key in MAY_CHANGE or key in DATA_FILES or a.get(key) == b.get(key):
            continue
        changes.append(f"{key} ({a.get(key)!r} -> {b.get(key)!r})")
    for key in DATA_FILES:
        if saved.get("data", {}).get(key) != current.get("data", {}).get(key):
            changes.append(f"{key} (file content)")
    return changes


def write_manifest(folder: Path, inputs: dict[str, Any]) -> None:
    """Checksum every file of a finished checkpoint; atomic (temp file, then rename) and written last."""
    manifest.write_manifest(folder, {"inputs": inputs})


def read_manifest(folder: Path) -> dict[str, Any] | None:
    return manifest.read_manifest(folder)


def verify(folder: Path, weights_only: bool = False) -> str | None:
    """Why ``folder`` cannot be resumed, or None when every file matches its manifest. With
    ``weights_only`` the optimizer, scheduler, scaler and RNG state are not needed."""
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        return "empty folder"
    if not (folder / MANIFEST).exists():
        return f"incomplete: no {MANIFEST} (the save did not finish)"

    def skip(name: str) -> bool:
        return weights_only and bool(STATE_FILES.match(Path(name).name))

    return manifest.problem(folder, skip)


def checkpoints_newest_first(ckpt_dir: Path) -> list[Path]:
    if not Path(ckpt_dir).is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in Path(ckpt_dir).iterdir() if (m := _STEP.match(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found, reverse=True)]


def move_aside(ckpt_dir: Path, log: Callable[[str], None], why: str) -> None:
    """Move a run's checkpoints to ``checkpoints-previous/`` (replacing an older set there) so a fresh
    start never mixes with, or rotates against, checkpoints of other inputs."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir() or not any(ckpt_dir.iterdir()):
        return
    dest = ckpt_dir.with_name(ckpt_dir.name + "-previous")
    if dest.exists():
        shutil.rmtree(dest)
    ckpt_dir.rename(dest)
    log(f"[train] {why}: moved the old checkpoints to {dest} and training from step 0")


def select_for_resume(
    ckpt_dir: Path,
    inputs: dict[str, Any],
    weights_only: bool,
    log: Callable[[str], None],
    move: bool = True,
) -> Path | None:
    """The newest intact checkpoint, made with ``inputs``. Damaged newer ones are named, one line each,
    and moved to ``checkpoints-damaged/`` (out of the Trainer's rotation, kept for inspection). None when
    there are no checkpoints; CheckpointError when none is intact or the intact one has other inputs.
    ``move=False`` (ranks other than 0) chooses the same checkpoint and touches nothing."""
    ckpt_dir = Path(ckpt_dir)
    candidates = checkpoints_newest_first(ckpt_dir)
    if not candidates:
        return None
    damaged: list[tuple[Path, str]] = []
    chosen = None
    for ckpt in candidates:
        reason = verify(ckpt, weights_only)
        if reason is None:
            chosen = ckpt
            break
        if not weights_only and STATE_FILES.match(reason.split(" ", 1)[0]) and verify(ckpt, True) is None:
            reason += " (its weights are intact: resume weights-only to continue with a fresh optimizer)"
        damaged.append((ckpt, reason))
    if chosen is None:
        lines = "\n".join(f"  {p}: {r}" for p, r in damaged)
        hint = (
            " Pass --resume-weights-only (resume_weights_only) to continue from the weights alone."
            if any("weights-only" in r for _, r in damaged)
            else " Start again without --resume."
        )
        raise CheckpointError(f"no intact checkpoint to resume in {ckpt_dir}:\n{lines}\n{hint.strip()}")
    saved = (read_manifest(chosen) or {}).get("inputs") or {}
    changes = changed_keys(saved, inputs)
    if changes:
        raise CheckpointError(
            f"cannot resume from {chosen}: it was trained with other inputs; changed: {', '.join(changes)}. "
            "Restore them, or train without --resume to start over.",
            changes,
        )
    if damaged and move:
        aside = ckpt_dir.with_name(ckpt_dir.name + "-damaged")
        aside.mkdir(exist_ok=True)
        for ckpt, reason in damaged:
            target = aside / ckpt.name
            if target.exists():
                shutil.rmtree(target)
            ckpt.rename(target)
            log(
                f"[train] {ckpt} is damaged ({reason}); resuming from {chosen.name} instead (moved it to {target})"
            )
    return chosen


class ManifestCallback(TrainerCallback):
    """Write each checkpoint's manifest once the Trainer has saved all of it, then rotate.

    The Trainer is built with ``save_total_limit=None`` so that its own rotation, which runs inside the
    save and before ``on_save``, cannot delete the previous checkpoint while the new one is unfinished.
    """

    def __init__(self, inputs: dict[str, Any], save_total_limit: int | None):
        self.inputs = inputs
        self.save_total_limit = save_total_limit

    def on_save(self, args, state, control, **kw: Any) -> None:
        if not args.should_save:  # rank 0 (per node with save_on_each_node) writes the checkpoint
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        write_manifest(folder, self.inputs)
        rotate_checkpoints(
            output_dir=args.output_dir,
            save_total_limit=self.save_total_limit,
            best_model_checkpoint=state.best_model_checkpoint,
            use_mtime=False,  # step order: a rewritten older checkpoint is not the newest
        )
