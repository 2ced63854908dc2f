"""The training config: one typed schema, YAML maps onto it 1:1, unknown keys are errors naming the key.

    instructkit train recipes/train/ner-minilm.yaml --set optim.lr=5e-5 --name my-run

Loaded by the shared loader (``instructkit/config.py``): types, ranges and unknown keys are checked there,
cross-field rules and the method's parameters in :meth:`TrainConfig.validate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from instructkit.config import ConfigError, check_ranges, checked, load, read_yaml, set_dotted
from instructkit.train.tasks import DEFAULT_TASK, TASKS

__all__ = ["ConfigError", "DataConfig", "EvalConfig", "OptimConfig", "TrainConfig"]


@dataclass
class DataConfig:
    train: str = ""
    """Training file (any format instructkit reads)."""
    val: str | None = None
    """Validation file; when null, ``val_share`` of train is held out (seeded)."""
    test: str | None = None
    """Test file, evaluated once at the end when given."""
    val_share: float = checked(0.1, ge=0, lt=1)
    """Share of train held out for validation when ``val`` is null (0 disables validation)."""
    format: str | None = None
    """Input format; detected from the content when null."""
    max_length: int = checked(512, ge=1)
    """Longest sample in tokens (causal-lm keeps whole turns where it can)."""
    chat_template: str | None = None
    """A Jinja chat template file to use instead of the tokenizer's (causal-lm)."""


@dataclass
class OptimConfig:
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """adamw or sgd."""
    lr: float = checked(5e-5, gt=0, finite=True)
    """Peak learning rate."""
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    """linear, cosine or constant (after warmup)."""
    warmup_ratio: float = checked(0.0, ge=0, le=1)
    """Share of steps spent warming up."""
    weight_decay: float = checked(0.0, ge=0, finite=True)
    """Decoupled weight decay."""
    batch_size: int = checked(8, ge=1)
    """Samples per step per process."""
    grad_accum: int = checked(1, ge=1)
    """Gradient accumulation steps."""
    micro_batch_size: int | None = checked(None, ge=1)
    """Samples (packed rows) per forward pass; a step still sees batch_size x grad_accum, so the result is
    the same and only the activation memory changes. null: 1 for packed rows on CPU (a full row keeps the
    matmuls busy; measured faster and a third of the memory of 8 rows, benchmarks/sft_throughput.py),
    else batch_size."""
    epochs: float = checked(1.0, ge=0, finite=True)
    """Epochs (ignored when max_steps > 0)."""
    max_steps: int = checked(-1, ge=-1)
    """Stop after this many optimizer steps (-1: use epochs)."""
    max_grad_norm: float = checked(1.0, ge=0, finite=True)
    """Gradient clipping (0: none)."""
    dropout: float | None = checked(None, ge=0, lt=1)
    """Override the model's dropout probabilities (null keeps them)."""


@dataclass
class EvalConfig:
    every_steps: int | None = checked(None, ge=1)
    """Evaluate every N steps; null evaluates once per epoch."""
    metric: str | None = None
    """Metric that picks the best checkpoint and drives early stopping (default per task: loss, f1, accuracy)."""
    patience: int | None = checked(None, ge=1)
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
    """Fine-tuning method and its parameters: {name: lora, r: 8, ...}; each method's parameters are
    checked at load (``instructkit config show method NAME`` lists them)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The data: files, format, sample length."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer, schedule, batch and length of training."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation during training, best checkpoint, early stopping."""
    name: str = "run"
    """Run name: the run folder is output_dir/name."""
    output_dir: str = "runs"
    """Folder that holds run folders."""
    seed: int = checked(0, ge=0)
    """Seed for weights init of new heads, data order and dropout."""
    save_every_steps: int | None = checked(None, ge=1)
    """Checkpoint every N steps (null: at each evaluation, or each epoch)."""
    save_total_limit: int | None = checked(2, ge=1)
    """Checkpoints kept on disk (null: all)."""
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
    logging_steps: int = checked(5, ge=1)
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
        return load(cls, data)

    @classmethod
    def from_yaml(
        cls, path: str | Path, overrides: dict[str, Any] | None = None, *, parse_strings: bool = True
    ) -> TrainConfig:
        """The file, then ``overrides`` (``{"optim.lr": "5e-4"}``; with ``parse_strings`` a string value is
        read as YAML, as ``--set`` gives it); an error names the file and the dotted key."""
        data = read_yaml(path)
        try:
            for dotted, value in (overrides or {}).items():
                set_dotted(data, dotted, value, parse=parse_strings)
            return cls.from_dict(data)
        except ConfigError as e:
            raise e.within(path) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """The rules across fields, and the method's parameters (a config built in code is checked here
        too: ``training.train`` calls this before it trains)."""
        from instructkit.train.rundir import run_name_problem

        check_ranges(self)
        problem = run_name_problem(self.name)
        if problem:
            raise ConfigError(f"{{key}} {problem} (the run folder is output_dir/name)", key="name")
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, not {self.task!r}")
        self.method = _checked_method(self.method, self.task)
        if not self.data.train:
            raise ConfigError("{key} is required", key="data.train")
        if self.optim.optimizer not in ("adamw", "sgd"):
            raise ConfigError("optim.optimizer must be adamw or sgd")
        if self.optim.schedule not in ("linear", "cosine", "constant"):
            raise ConfigError("optim.schedule must be linear, cosine or constant")
        if str(self.packing).lower() not in ("auto", "true", "false"):
            raise ConfigError("packing must be auto, true or false")
        if str(self.bf16).lower() not in ("auto", "true", "false"):
            raise ConfigError("bf16 must be auto, true or false")
        if self.optim.max_steps == 0:
            raise ConfigError(
                "{key} must be -1 (train for optim.epochs) or at least 1", key="optim.max_steps"
            )
        if self.optim.max_steps < 0 and self.optim.epochs <= 0:
            raise ConfigError(
                "{key} is 0 and optim.max_steps is -1: nothing to train; give epochs > 0 or max_steps >= 1",
                key="optim.epochs",
            )
        micro = self.optim.micro_batch_size
        if micro is not None and (micro < 1 or self.optim.batch_size % micro):
            raise ConfigError(
                f"optim.micro_batch_size ({micro}) must divide optim.batch_size ({self.optim.batch_size})"
            )
        if not 0 <= self.data.val_share < 1:
            raise ConfigError("data.val_share must be in [0, 1)")


def _checked_method(method: Any, task: str) -> dict[str, Any]:
    """``method`` (``{name: lora, r: 8}``) with its parameters checked against the method's schema, typed
    (``"16"`` -> 16), and the method checked to apply to ``task``."""
    from instructkit.train.methods import MethodError, build_method

    if not isinstance(method, dict) or not isinstance(method.get("name"), str):
        raise ConfigError("{key} must be a mapping with a 'name' (e.g. {name: lora, r: 8})", key="method")
    params = {k: v for k, v in method.items() if k != "name"}
    built = build_method(method["name"], params, prefix="method")
    try:
        built.check_task(task)
    except MethodError as e:
        raise ConfigError("{key}: " + str(e), key="method.name") from None
    typed = built.params()
    # values given as strings ("16" from --set) become typed; the rest stay as written, so a config's
    # hash (checkpoint manifests, run stages) does not change under a value that was already right
    return {"name": method["name"], **{k: typed[k] if isinstance(v, str) else v for k, v in params.items()}}
