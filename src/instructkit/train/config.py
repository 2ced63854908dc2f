"""The training config: one typed schema, YAML maps onto it 1:1, unknown keys are errors naming the key.

instructkit train recipes/ner-minilm.yaml --optim.lr 5e-5 --name my-run
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from instructkit.train.tasks import DEFAULT_TASK, TASKS


class ConfigError(ValueError):
    """A training config is invalid; the message names the key."""


@dataclass
class DataConfig:
    train: str = ""
    """Training file (any format instructkit reads)."""
    val: str | None = None
    """Validation file; when null, ``val_share`` of train is held out (seeded)."""
    test: str | None = None
    """Test file, evaluated once at the end when given."""
    val_share: float = 0.1
    """Share of train held out for validation when ``val`` is null (0 disables validation)."""
    format: str | None = None
    """Input format; detected from the content when null."""
    max_length: int = 512
    """Longest sample in tokens (causal-lm keeps whole turns where it can)."""
    chat_template: str | None = None
    """A Jinja chat template file to use instead of the tokenizer's (causal-lm)."""


@dataclass
class OptimConfig:
    optimizer: str = "adamw"
    """adamw or sgd."""
    lr: float = 5e-5
    """Peak learning rate."""
    schedule: str = "linear"
    """linear, cosine or constant (after warmup)."""
    warmup_ratio: float = 0.0
    """Share of steps spent warming up."""
    weight_decay: float = 0.0
    """Decoupled weight decay."""
    batch_size: int = 8
    """Samples per step per process."""
    grad_accum: int = 1
    """Gradient accumulation steps."""
    micro_batch_size: int | None = None
    """Samples (packed rows) per forward pass; a step still sees batch_size x grad_accum, so the result is
    the same and only the activation memory changes. null: 1 for packed rows on CPU (a full row keeps the
    matmuls busy; measured faster and a third of the memory of 8 rows, benchmarks/sft_throughput.py),
    else batch_size."""
    epochs: float = 1.0
    """Epochs (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: use epochs)."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    dropout: float | None = None
    """Override the model's dropout probabilities (null keeps them)."""


@dataclass
class EvalConfig:
    every_steps: int | None = None
    """Evaluate every N steps; null evaluates once per epoch."""
    metric: str | None = None
    """Metric that picks the best checkpoint and drives early stopping (default per task: loss, f1, accuracy)."""
    patience: int | None = None
    """Early stopping: evaluations without improvement before stopping (null: never stop early)."""
    load_best: bool = True
    """Restore the best checkpoint at the end."""


@dataclass
class TrainConfig:
    model: str = "smollm2-135m-instruct"
    """Base model: bundled alias, local folder or hub id."""
    task: str = DEFAULT_TASK
    """causal-lm, sequence-classification, token-classification or masked-lm."""
    method: dict[str, Any] = field(default_factory=lambda: {"name": "full"})
    """Fine-tuning method and its parameters: {name: lora, r: 8, ...}."""
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    name: str = "run"
    """Run name: the run folder is output_dir/name."""
    output_dir: str = "runs"
    """Folder that holds run folders."""
    seed: int = 0
    """Seed for weights init of new heads, data order and dropout."""
    save_every_steps: int | None = None
    """Checkpoint every N steps (null: at each evaluation, or each epoch)."""
    save_total_limit: int = 2
    """Checkpoints kept on disk."""
    bf16: str | bool = "auto"
    """auto (bf16 autocast where the CPU supports it fast), true or false."""
    packing: str | bool = "auto"
    """causal-lm: pack samples into rows with a block-diagonal mask (no cross-sample attention); a batch is
    then batch_size rows of up to max_length tokens. auto: on where the task and the method both support it
    (causal-lm, any method but prompt-tuning)."""
    trained_positions_head: bool = True
    """causal-lm: compute the LM head only at positions whose next token is trained (same loss, less work)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    group_by_length: bool = True
    """Batch samples of similar length together (less padding)."""
    logging_steps: int = 5
    """Log loss and learning rate every N steps."""
    resume_weights_only: bool = False
    """On resume, take only the weights and the step count from the checkpoint and start the optimizer,
    schedule and RNG fresh (for a checkpoint whose optimizer.pt/scheduler.pt/rng_state.pth is lost or
    damaged). Not an exact continuation; without it such a checkpoint is refused."""

    def packing_enabled(self) -> bool:
        s = str(self.packing).lower()
        if s == "auto":
            from instructkit.train.methods import MethodError, method_class

            try:
                method_packs = method_class(str(self.method.get("name", ""))).packing
            except MethodError:
                method_packs = True  # an unknown method is reported where it is built, not here
            return self.task in TASKS and TASKS[self.task].packing and method_packs
        return s == "true"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _build(cls, data, "")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a training config is a mapping")
        for dotted, value in (overrides or {}).items():
            _set_dotted(data, dotted, value)
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        from instructkit.train.rundir import run_name_problem

        problem = run_name_problem(self.name)
        if problem:
            raise ConfigError(f"'name' {problem} (the run folder is output_dir/name)")
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if not isinstance(self.method, dict) or "name" not in self.method:
            raise ConfigError("method must be a mapping with a 'name' (e.g. {name: lora, r: 8})")
        if not self.data.train:
            raise ConfigError("data.train is required")
        if self.optim.optimizer not in ("adamw", "sgd"):
            raise ConfigError("optim.optimizer must be adamw or sgd")
        if self.optim.schedule not in ("linear", "cosine", "constant"):
            raise ConfigError("optim.schedule must be linear, cosine or constant")
        if str(self.packing).lower() not in ("auto", "true", "false"):
            raise ConfigError("packing must be auto, true or false")
        if str(self.bf16).lower() not in ("auto", "true", "false"):
            raise ConfigError("bf16 must be auto, true or false")
        micro = self.optim.micro_batch_size
        if micro is not None and (micro < 1 or self.optim.batch_size % micro):
            raise ConfigError(
                f"optim.micro_batch_size ({micro}) must divide optim.batch_size ({self.optim.batch_size})"
            )
        if not 0 <= self.data.val_share < 1:
            raise ConfigError("data.val_share must be in [0, 1)")


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{dotted}': '{k}' is not a mapping")
    node[keys[-1]] = yaml.safe_load(value) if isinstance(value, str) else value


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check a scalar against its annotation; numbers written as strings ("5e-4", which YAML 1.1
    reads as a string) become numbers. A wrong type is an error naming the key."""
    origin = typing.get_origin(hint)
    if origin in (dict, list):
        if not isinstance(value, origin):
            raise ConfigError(f"'{key}' must be a {'mapping' if origin is dict else 'list'}, got {value!r}")
        return value
    args = set(typing.get_args(hint)) or {hint}
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"'{key}' may not be null")
    for kind in (bool, int, float):
        if kind not in args or (kind is not bool and isinstance(value, bool)):
            continue  # True is an int to Python, never to a config
        if isinstance(value, kind):
            return float(value) if kind is float else value
        if kind is float and isinstance(value, int):
            return float(value)
    if str in args and isinstance(value, str):
        return value
    for kind in (int, float):
        if kind in args and isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
    if args & {bool, int, float, str}:
        want = " or ".join(sorted(t.__name__ for t in args if t in (bool, int, float, str)))
        raise ConfigError(f"'{key}' must be {want}, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix.rstrip('.') or 'config'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    obj = cls(**kwargs)
    if hasattr(obj, "validate") and cls is TrainConfig:
        obj.validate()
    return obj
