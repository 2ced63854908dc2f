"""What a fine-tuning method is: which parameters of a pretrained model train, how the trained part is
saved, and how it is rebuilt on a fresh copy of the base model. Methods register themselves by name."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from instructkit.config import ConfigError, check_ranges, load
from instructkit.train.tasks import TASKS

METHODS: dict[str, type[Method]] = {}
WEIGHTS_FILE = "trained.safetensors"
"""Non-PEFT methods save the parameters they trained here (PEFT methods: adapter_model.safetensors)."""
METHOD_FILE = "method.json"
PEFT_INSTALL = "pip install 'peft>=0.17'"


class MethodError(ConfigError):
    """A method that cannot apply (wrong task, nothing to train, unknown parameter); says what to use instead."""


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def method_class(name: str, prefix: str = "") -> type[Method]:
    """The registered class of ``name`` (``prompt_tuning`` and ``Prompt-Tuning`` name ``prompt-tuning``);
    an unknown name is a MethodError naming ``prefix.name`` when a prefix (``"method"``) is given."""
    key = name.strip().lower().replace("_", "-")
    if key not in METHODS:
        raise MethodError(
            ("{key}: " if prefix else "")
            + f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}",
            key=f"{prefix}.name" if prefix else None,
        )
    return METHODS[key]


def build_method(name: str, params: dict[str, Any] | None = None, *, prefix: str = "") -> Method:
    """The method ``name`` with ``params``, loaded like any config (types, ranges, unknown parameters
    listed); an error is a MethodError naming the parameter, under ``prefix`` (``"method"``) when given."""
    return load(
        method_class(name, prefix),
        dict(params or {}),
        prefix=prefix,
        error=MethodError,
        noun="parameter",
        ignore=("name",),
    )


@dataclass
class Method:
    """Base class. A subclass is a dataclass whose fields are the method's parameters (each documented
    right under it) and whose ``apply`` returns the model to train with ``requires_grad`` set."""

    name: ClassVar[str]
    task_types: ClassVar[tuple[str, ...] | None] = None
    """PEFT task types (``Task.peft_task_type``) of the tasks the method applies to; None: every task."""
    packing: ClassVar[bool] = True
    """Works on packed rows (per-sample position ids and a block-diagonal mask reach the model intact)."""
    trained_positions_head: ClassVar[bool] = True
    """Leaves the model's forward able to run the LM head only at trained positions (``train/trainer.py``)."""
    plain_weights: ClassVar[bool] = True
    """The trained model already is the base architecture with new weights (full, freeze, bitfit): it saves
    and reloads with plain transformers as it is, with nothing to merge."""
    merge_refusal: ClassVar[str | None] = None
    """Why the trained part cannot be folded into the base architecture's weights; None: ``merged`` can."""

    def __post_init__(self) -> None:
        # ranges are declared beside each field (``checked``); a method built in code is held to them too
        check_ranges(self, error=MethodError)
        self.validate()

    def validate(self) -> None:
        """Rules across parameters; raise MethodError naming the parameter (``key=``)."""

    def apply(self, model: Any, task: str) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def task_names(cls) -> list[str]:
        """The registered tasks this method applies to."""
        return [n for n, t in TASKS.items() if cls.task_types is None or t.peft_task_type in cls.task_types]

    def check_task(self, task: str) -> None:
        if task not in TASKS:
            raise MethodError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
        if task not in self.task_names():
            raise MethodError(
                f"{self.name} applies to {' and '.join(self.task_names())} only, not {task}; use lora or full"
            )

    def for_loading(self) -> Method:
        """The method as ``load_trained`` rebuilds it (the saved weights replace any initialisation)."""
        return self

    def merged(self, model: nn.Module) -> nn.Module:
        """The trained model as the base architecture alone (loadable by plain transformers, same outputs):
        a PEFT model's updates folded into the base weights (``merge_and_unload``), a plain one as it is."""
        if self.merge_refusal:
            raise MethodError(f"{self.name} cannot be merged: {self.merge_refusal}")
        if is_peft(model):
            return model.merge_and_unload()
        return model

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ save / load
    def save_trained(self, model: nn.Module, folder: Path) -> None:
        """Write only what was trained, plus ``method.json`` (name and parameters)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if is_peft(model):
            model.save_pretrained(str(folder))
        else:
            from safetensors.torch import save_file

            trained = {
                n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
            }
            save_file(trained, str(folder / WEIGHTS_FILE), metadata={"method": self.name})
        info = {"method": self.name, "params": self.params()}
        (folder / METHOD_FILE).write_text(json.dumps(info, indent=2) + "\n")

    @classmethod
    def load_trained(cls, base_model: Any, folder: Path, task: str) -> nn.Module:
        """Rebuild a trained model: the method from ``method.json``, applied to a fresh base model, then
        the saved weights. Gives the same outputs as the model that was trained."""
        folder = Path(folder)
        info = json.loads((folder / METHOD_FILE).read_text())
        if info.get("method") != cls.name:
            raise MethodError(f"{folder} was trained with {info.get('method')!r}, not {cls.name!r}")
        method = build_method(cls.name, info.get("params"))
        model = method.for_loading().apply(base_model, task)
        load_weights(model, folder)
        return model

    def trainable_summary(self, model: nn.Module) -> dict[str, Any]:
        total = trainable = 0
        for p in model.parameters():
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
        return {"trainable": trainable, "total": total, "share": trainable / total if total else 0.0}


def load_weights(model: nn.Module, folder: Path) -> None:
    """Load what ``save_trained`` wrote into a model the same method was applied to."""
    if is_peft(model):
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        if not any((folder / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
            # PEFT would take the folder name for a hub repo id and fail with a message about repo ids
            raise MethodError(f"{folder}: adapter_model.safetensors is missing (the trained weights)")
        result = set_peft_model_state_dict(model, load_peft_weights(str(folder), device="cpu"))
        # prompt learning loads "prompt_embeddings" into the prompt encoder itself, yet still reports it
        extra = [k for k in result.unexpected_keys if k != "prompt_embeddings"]
        if extra:
            raise MethodError(f"{folder}: saved weights the rebuilt model lacks: {extra[:5]}")
        return
    from safetensors.torch import load_file

    if not (folder / WEIGHTS_FILE).is_file():
        raise MethodError(f"{folder}: {WEIGHTS_FILE} is missing (the trained weights)")
    saved = load_file(str(folder / WEIGHTS_FILE))
    params = dict(model.named_parameters())
    extra = [n for n in saved if n not in params]
    if extra:
        raise MethodError(f"{folder / WEIGHTS_FILE}: weights the rebuilt model lacks: {extra[:5]}")
    with torch.no_grad():
        for n, t in saved.items():
            params[n].copy_(t)


# ---------------------------------------------------------------------- helpers shared by methods
def is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "save_pretrained")


def require_peft(method: str) -> Any:
    try:
        import peft
    except ImportError:
        raise ImportError(f"the {method} method needs the 'peft' package ({PEFT_INSTALL})") from None
    return peft


def layer_stack(model: Any, method: str) -> tuple[str, nn.ModuleList]:
    """The transformer layers: the first ModuleList as long as ``config.num_hidden_layers``."""
    n = getattr(model.config.get_text_config(), "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return name, module
    raise MethodError(
        f"{method}: found no list of {n} transformer layers in {type(model).__name__}; use lora or full"
    )


def head_module_names(model: Any, task: str) -> list[str]:
    """The task head's top-level modules (``classifier``, ``score``) for tasks with a new head, else []."""
    if not TASKS[task].has_labels:
        return []
    prefix = model.base_model_prefix
    return [n for n, child in model.named_children() if n != prefix and any(True for _ in child.parameters())]


def head_parameter_names(model: Any, task: str) -> set[str]:
    """Parameters outside the base model (``model.base_model_prefix``), for classification tasks only:
    a new head starts random and always trains."""
    if not TASKS[task].has_labels:
        return set()
    prefix = model.base_model_prefix + "."
    return {n for n, _ in model.named_parameters() if not n.startswith(prefix)}


def train_only(model: nn.Module, names: set[str]) -> None:
    """``requires_grad`` on exactly the parameters named (tied parameters count once, by first name)."""
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)


def peft_task_kwargs(model: Any, task: str) -> dict[str, Any]:
    """``task_type`` and ``modules_to_save`` (the classification head, trained in full) for a PEFT config."""
    return {
        "task_type": TASKS[task].peft_task_type,
        "modules_to_save": head_module_names(model, task) or None,
    }
