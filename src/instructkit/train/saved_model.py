"""A trained model's folder: what ``instructkit train`` writes at the end of a run and what eval, serve and
``instructkit run`` reload — the weights the method trained, the tokenizer with its chat template, and
``instructkit.json`` (task, base model, method, labels), so a folder rebuilds exactly what was trained.

This is train's public face for readers of a trained run: evaluate, serve and the recipe import this module
(and ``train.tasks``), never the training loop. Not to be confused with ``checkpoints.py``: those are the
resumable mid-run checkpoints (optimizer, schedule, RNG, checksum manifests), not the finished model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from instructkit import __version__
from instructkit.files import write_text
from instructkit.models import ModelFolderError, pad_id, verify_folder, write_manifest
from instructkit.train.tasks import TASKS, LabelInfo, Task

if TYPE_CHECKING:
    from instructkit.train.config import TrainConfig

INFO_FILE = "instructkit.json"
log = logging.getLogger(__name__)


MODEL_PLACES = (".", "model", "train/model")
"""Where a trained model's ``INFO_FILE`` is looked for under a folder given as a model, in this order: the
model folder itself, a training run's ``model/``, and the ``train/model/`` of a run recipe's folder (the
folder ``instructkit run`` prints), so every command that takes a trained run takes any of the three."""


def _info_path(folder: str | Path) -> Path | None:
    """The first ``INFO_FILE`` found under ``folder`` in the order of :data:`MODEL_PLACES`, or None."""
    for place in MODEL_PLACES:
        info = Path(folder) / place / INFO_FILE  # pathlib drops the "."
        if info.exists():
            return info
    return None


def is_trained_run(name: str | Path) -> bool:
    """A run folder, its ``model/`` folder, or a run recipe's folder (``train/model/``) holding a model
    that ``instructkit train`` finished (it holds ``INFO_FILE``). An exported model (``instructkit
    export``) also carries ``INFO_FILE``, marked ``"export"``: it is a plain model folder, loaded like any
    other, so it is not a trained run."""
    info = _info_path(name)
    if info is None:
        return False
    try:
        return "export" not in json.loads(info.read_text())
    except (OSError, ValueError):
        return True  # unreadable: load_trained names the file and the problem


def trained_method(info: dict[str, Any]) -> Any:
    """The method a trained folder's ``instructkit.json`` names, with its parameters (``merged``,
    ``plain_weights`` and ``merge_refusal`` say whether and how it becomes plain weights)."""
    from instructkit.train.methods import build_method

    params = {k: v for k, v in info["method"].items() if k != "name"}
    return build_method(info["method"]["name"], params)


def load_base(model_name: str, task: Task, labels: LabelInfo, seed: int) -> Any:
    """The pretrained model with ``task``'s head; a new head is initialised from ``seed``."""
    import torch

    from instructkit.models import load_model

    torch.manual_seed(seed)  # a new task head is initialised the same way every run
    model = load_model(model_name, auto_class=task.auto_model, **task.model_kwargs(labels))
    if getattr(model.config, "pad_token_id", None) is None and task.pools_last_token:
        from instructkit.models import load_tokenizer

        model.config.pad_token_id = pad_id(load_tokenizer(model_name))
    return model


def save_trained(
    model: Any,
    tokenizer: Any,
    method: Any,
    cfg: TrainConfig,
    labels: LabelInfo,
    folder: Path,
    chat_template: str | None,
) -> None:
    """Write what was trained + the tokenizer + ``instructkit.json`` (task, base, method, labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    method.save_trained(model, folder)
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    info = {
        "instructkit_version": __version__,
        "task": cfg.task,
        "base_model": cfg.model,
        "method": cfg.method,
        "labels": labels.to_dict(),
        "max_length": cfg.data.max_length,
        "chat_template": getattr(tokenizer, "chat_template", None),
        "seed": cfg.seed,
    }
    write_text(json.dumps(info, indent=2) + "\n", folder / INFO_FILE)
    write_manifest(folder)  # last: a folder without it did not finish saving (models/manifest.py)


def model_folder(folder: str | Path) -> Path:
    """The folder holding a trained run's ``instructkit.json``: ``folder``, its ``model/`` or its
    ``train/model/`` (:data:`MODEL_PLACES`); ``folder`` itself when none holds one."""
    info = _info_path(folder)
    return info.parent if info is not None else Path(folder)


def verify_trained(folder: str | Path) -> bool:
    """Check a trained model folder against its checksum manifest before anything reads it: True when it
    matches, False (with a logged warning) when the folder has none — saved before manifests existed, or
    a save that did not finish. Raises ModelFolderError naming the file that differs."""
    folder = model_folder(folder)
    if verify_folder(folder, what="trained model"):
        return True
    log.warning(
        "%s has no checksum manifest (saved by an older instructkit, or the save did not finish): its "
        "files cannot be checked",
        folder,
    )
    return False


def read_info(folder: str | Path) -> dict[str, Any]:
    """A trained folder's ``instructkit.json``; ModelFolderError naming the file when it is unusable."""
    path = model_folder(folder) / INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelFolderError(f"{path}: cannot be read ({e.strerror})") from None
    except ValueError as e:
        raise ModelFolderError(f"{path}: not valid JSON ({e})") from None
    missing = [
        k for k in ("task", "base_model", "method", "labels") if not isinstance(info, dict) or k not in info
    ]
    if missing:
        raise ModelFolderError(f"{path}: not a trained model's {INFO_FILE} (no {', '.join(missing)})")
    if not isinstance(info["method"], dict) or "name" not in info["method"]:
        raise ModelFolderError(f"{path}: field method: expected an object with a name")
    if info["task"] not in TASKS:
        raise ModelFolderError(f"{path}: field task: unknown task {info['task']!r}")
    return info


def load_trained(folder: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild a trained model from its folder: the base model, the method, the trained weights — after
    the folder matched its checksum manifest (:func:`verify_trained`)."""
    from transformers import AutoTokenizer

    from instructkit.train.methods import METHODS, MethodError

    folder = model_folder(folder)
    verify_trained(folder)
    info = read_info(folder)
    if info["method"]["name"] not in METHODS:
        raise ModelFolderError(
            f"{folder / INFO_FILE}: field method.name: unknown method {info['method']['name']!r}"
        )
    task = TASKS[info["task"]]()
    labels = LabelInfo.from_dict(info["labels"])
    base = load_base(info["base_model"], task, labels, info.get("seed", 0))
    try:
        model = METHODS[info["method"]["name"]].load_trained(base, folder, info["task"])
        tok = AutoTokenizer.from_pretrained(folder)
    except MethodError:
        raise
    except Exception as e:  # safetensors, PEFT and tokenizers each raise their own kinds for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelFolderError(
            f"trained model {folder}: its {info['method']['name']} weights or tokenizer cannot be loaded "
            f"({type(e).__name__}: {first})"
        ) from e
    model.eval()
    return model, tok, info
