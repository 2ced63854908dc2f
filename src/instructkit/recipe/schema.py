"""The recipe of ``instructkit run``: one typed schema (``instructkit config show recipe``) and the stage
names, in order."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.config import ConfigError, checked, load, read_yaml

STAGES = ("generate", "template", "data", "before", "train", "after", "report")


class RecipeError(ConfigError):
    """A recipe is invalid; the message names the file and the key."""


@dataclass
class EvalSettings:
    split: str = checked("test", choices=("test", "val", "held-out"))
    """Which split to score: a curated one (test or val), or held-out: the template stage's rendering of
    its sources' test files (the dataset's own test split, never curated)."""
    metrics: list[str] | None = None
    """Metric names (null: the task's defaults)."""
    batch_size: int = checked(16, ge=1)
    """Prompts per generate call / samples per forward."""
    max_length: int = checked(512, ge=1)
    """Longest input in tokens."""
    max_new_tokens: int = checked(128, ge=1)
    """Longest generated reply (causal-lm)."""
    task_max_new_tokens: dict[str, int] = field(default_factory=dict)
    """For templated records (a template stage's held-out split): the longest reply per task (meta.task),
    in place of max_new_tokens, e.g. {classification: 8, code: 160}, so a mixture of tasks is decoded with
    each task's own budget; tasks not named use max_new_tokens."""
    labels: list[str] | None = None
    """For generative classification: the label set parsed from replies (default: the references)."""
    examples: int = checked(5, ge=0)
    """Changed answers shown in the report."""

    def __post_init__(self) -> None:
        from instructkit.evaluate.templated import TASK_METRICS

        for task, n in self.task_max_new_tokens.items():
            if task not in TASK_METRICS:
                raise ConfigError(
                    "{key}: unknown task (known: " + ", ".join(TASK_METRICS) + ")",
                    key=f"task_max_new_tokens.{task}",
                )
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(
                    f"{{key}} must be an integer of at least 1, got {n!r}", key=f"task_max_new_tokens.{task}"
                )

    def digest_view(self) -> dict[str, Any]:
        """The settings as the before/after digests hash them: a new key is hashed only when set, so run
        folders made before it existed keep their finished stages (tests/test_run_digests.py)."""
        out = dataclasses.asdict(self)
        if not out["task_max_new_tokens"]:
            del out["task_max_new_tokens"]
        return out


@dataclass
class Recipe:
    name: str = "run"
    """Run name: the run folder is output_dir/name."""
    output_dir: str = "runs"
    """Folder that holds run folders."""
    inputs: list[str] = field(default_factory=list)
    """Input data files (any format instructkit reads)."""
    generate: dict[str, Any] | None = None
    """Optional first stage: ``{generator: self-instruct | evol | code, ...its config}`` (``instructkit config
    show generate NAME``); the generated records join ``inputs``."""
    template: str | dict[str, Any] | None = None
    """Optional stage before curation: a mixture config (a YAML path or mapping; ``instructkit config show
    mixture``) that renders labeled datasets into instruction records, which join ``inputs``; its sources'
    ``test`` files become the held-out split (``eval.split: held-out``)."""
    held_out: str | None = None
    """A held-out test file scored as it is by ``eval.split: held-out`` (a dataset's own test split, in any
    format instructkit reads; never curated): for recipes without a template stage, e.g. an encoder head
    on labeled rows."""
    curate: str | dict[str, Any] | None = None
    """A curate YAML path or mapping (null: the default pipeline)."""
    train: str | dict[str, Any] = ""
    """A training YAML path or mapping; data.train/val are set to the curated splits."""
    train_overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted overrides on the training config: {optim.epochs: 2}."""
    eval: EvalSettings = field(default_factory=EvalSettings)
    """How the model is scored before and after training."""

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
        """The recipe's own keys checked; :func:`check_recipe` checks the configs it points to."""
        data = read_yaml(path, RecipeError)
        data.update(overrides or {})
        try:
            return load(cls, data, error=RecipeError)
        except ConfigError as e:
            raise RecipeError(e.template, key=e.key, where=(str(path), *e.where)) from None

    def validate(self) -> None:
        from instructkit.train.rundir import run_name_problem

        problem = run_name_problem(self.name)
        if problem:
            raise RecipeError(f"{{key}} {problem} (the run folder is output_dir/name)", key="name")
        if not self.inputs and not self.generate and not self.template:
            raise RecipeError(
                "{key} lists no data files (and there is no generate or template stage)", key="inputs"
            )
        if not self.train:
            raise RecipeError("{key} is required (a training YAML or mapping)", key="train")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
