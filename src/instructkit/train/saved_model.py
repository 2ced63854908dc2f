"""A trained model's folder: what ``instructkit train`` writes at the end of a run and what eval, serve and
``instructkit run`` reload — the weights the method trained, the tokenizer with its chat template, and
``instructkit.json`` (task, base model, method, labels), so a folder rebuilds exactly what was trained.

This is train's public face for readers of a trained run: evaluate, serve and the recipe import this module
(and ``train.tasks``), never the training loop. Not to be confused with ``checkpoints.py``: those are the
resumable mid-run checkpoints (optimizer, schedule, RNG, checksum manifests), not the finished model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from instructkit import __version__
from instructkit.formats.io import write_text
from instructkit.models import pad_id
from instructkit.train.tasks import TASKS, LabelInfo, Task

if TYPE_CHECKING:
    from instructkit.train.config import TrainConfig

INFO_FILE = "instructkit.json"


def is_trained_run(name: str | Path) -> bool:
    """A run folder, or its ``model/`` folder, that ``instructkit train`` finished (it holds ``INFO_FILE``).
    An exported model (``instructkit export``) also carries ``INFO_FILE``, marked ``"export"``: it is a
    plain model folder, loaded like any other, so it is not a trained run."""
    path = Path(name)
    for info in (path / INFO_FILE, path / "model" / INFO_FILE):
        if info.exists():
            try:
                return "export" not in json.loads(info.read_text())
            except (OSError, ValueError):
                return True  # unreadable: load_trained names the file and the problem
    return False


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


def load_trained(folder: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild a trained model from its folder: the base model, the method, the trained weights."""
    from transformers import AutoTokenizer

    from instructkit.train.methods import METHODS

    folder = Path(folder)
    if (folder / "model" / INFO_FILE).exists():
        folder = folder / "model"
    info = json.loads((folder / INFO_FILE).read_text())
    task = TASKS[info["task"]]()
    labels = LabelInfo.from_dict(info["labels"])
    base = load_base(info["base_model"], task, labels, info.get("seed", 0))
    model = METHODS[info["method"]["name"]].load_trained(base, folder, info["task"])
    model.eval()
    return model, AutoTokenizer.from_pretrained(folder), info
