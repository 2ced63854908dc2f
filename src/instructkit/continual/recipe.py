"""The continual recipe: one typed schema for ``instructkit continual RECIPE.yaml`` (loaded by
``instructkit.config.load``: unknown keys, types and ranges named by dotted path, ``tasks[1].metric``).

    name: three-tasks
    output_dir: runs                    # rounds go to runs/three-tasks/round-K/
    model: smollm2-135m-instruct
    task: causal-lm
    method: {name: lora, r: 16}
    strategy: {name: replay, ratio: 0.1}
    train: {optim: {lr: 2.0e-4, epochs: 1}}
    tasks:
      - {name: sentiment, train: a.jsonl, test: a_test.jsonl, metric: accuracy, labels: [positive, negative]}
      - {name: ner-as-text, train: b.jsonl, test_share: 0.1, metric: entity-f1}
      - {name: code, train: c.jsonl, test: c_test.jsonl, metric: rouge}
    general: general_check.jsonl
    seed: 0
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.config import ConfigError, checked, load, read_yaml, set_dotted
from instructkit.train.tasks import DEFAULT_TASK, TASKS

FIXED_TRAIN_KEYS = ("model", "task", "method", "name", "output_dir", "seed")
"""Training-config keys the recipe sets itself (top level, or per round), refused inside ``train``."""


class ContinualRecipeError(ConfigError):
    """A continual recipe is invalid; the message names the file and the key (``tasks[1].metric``)."""


@dataclass
class TaskSpec:
    name: str = ""
    """The task's name: its column of the score matrix, its adapter folder (adapters strategy)."""
    train: str = ""
    """Training records (any format instructkit reads; chat records with an assistant reply)."""
    test: str | None = None
    """Test records scored after every round from the one before this task's on. Set this or test_share."""
    test_share: float | None = checked(None, gt=0, lt=1)
    """Instead of ``test``: this share of ``train`` held out (seeded by ``seed``) as the test split."""
    metric: str = "rouge"
    """How replies are scored, 0-100: any registered evaluation metric that scores a reply: accuracy (the label a reply names, among ``labels``), semeval-f1,
    squad (SQuAD F1), exact-match, entity-f1 (NER as ``type: span`` lines, ``none`` for no entity), rouge
    (ROUGE-L F-measure), bleu, chrf."""
    labels: list[str] | None = None
    """Labelled metrics (accuracy, semeval-f1) only: the label set replies are parsed onto (default: the
    test references' labels)."""
    format: str | None = None
    """Input format of train/test; detected from the content when null."""
    max_new_tokens: int | None = checked(None, ge=1)
    """Longest generated reply when scoring (default: the metric's own budget, e.g. accuracy 8, squad 32,
    entity-f1 64, rouge 128)."""

    def validate(self) -> None:
        from instructkit.train.rundir import run_name_problem

        problem = run_name_problem(self.name)
        if problem:
            raise ContinualRecipeError(f"{{key}} {problem} (it names the task's folders)", key="name")
        if not self.train:
            raise ContinualRecipeError("{key} is required (the task's training file)", key="train")
        if (self.test is None) == (self.test_share is None):
            raise ContinualRecipeError("{key}: set exactly one of test and test_share", key="test")
        from instructkit.continual.scoring import text_metric

        try:
            metric = text_metric(self.metric)
        except ValueError as e:
            raise ContinualRecipeError(f"{{key}}: {e}", key="metric") from None
        if self.labels is not None and not metric.labelled:
            raise ContinualRecipeError(
                f"{{key}} applies to labelled metrics (accuracy, semeval-f1) only, not {self.metric}",
                key="labels",
            )
        if self.labels is not None and len(self.labels) < 2:
            raise ContinualRecipeError("{key} needs at least two labels", key="labels")

    @property
    def new_tokens(self) -> int:
        from instructkit.continual.scoring import text_metric

        return self.max_new_tokens or text_metric(self.metric).reply_tokens


@dataclass
class ContinualRecipe:
    name: str = "continual"
    """Run name: the rounds go to output_dir/name/round-K/."""
    output_dir: str = "runs"
    """Folder that holds run folders."""
    model: str = "smollm2-135m-instruct"
    """Base model: bundled alias, local folder or hub id."""
    task: str = DEFAULT_TASK
    """The head, as in train configs; rounds are scored on generated replies, so a generative head
    (causal-lm)."""
    method: dict[str, Any] = field(default_factory=lambda: {"name": "lora"})
    """Fine-tuning method and its parameters, as in a train config ({name: lora, r: 16})."""
    strategy: dict[str, Any] = field(default_factory=lambda: {"name": "naive"})
    """Continual strategy and its parameters: naive, replay {ratio | size}, ewc {lam}, lwf {alpha,
    temperature}, adapters {route: name | classifier} (``instructkit config show`` style docs in
    continual/strategies/)."""
    train: dict[str, Any] = field(default_factory=dict)
    """Training settings for every round, as in a train config (optim, eval, data.max_length, ...);
    model, task, method, name, output_dir, seed and data.train are set by the recipe."""
    tasks: list[TaskSpec] = field(default_factory=list)
    """The task sequence, in training order: round K trains tasks[K]."""
    general: str | None = None
    """A general-ability set (chat records) scored with ROUGE-L after every round; no round trains on it."""
    seed: int = checked(0, ge=0)
    """Seeds training, the test_share splits, the replay buffer and the EWC sampling."""

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def validate(self) -> None:
        from instructkit.continual.strategies import build_strategy
        from instructkit.train.rundir import run_name_problem

        problem = run_name_problem(self.name)
        if problem:
            raise ContinualRecipeError(f"{{key}} {problem} (the run folder is output_dir/name)", key="name")
        if self.task not in TASKS or not TASKS[self.task].generative:
            generative = ", ".join(sorted(name for name, cls in TASKS.items() if cls.generative))
            raise ContinualRecipeError(
                f"{{key}} must be a generative head ({generative}): rounds are scored on generated replies; "
                f"not {self.task!r}",
                key="task",
            )
        if not self.tasks:
            raise ContinualRecipeError("{key} lists no tasks", key="tasks")
        seen: dict[str, int] = {}
        for i, t in enumerate(self.tasks):
            if t.name in seen:
                raise ContinualRecipeError(
                    f"{{key}} {t.name!r} repeats tasks[{seen[t.name]}].name", key=f"tasks[{i}].name"
                )
            seen[t.name] = i
        if not isinstance(self.strategy, dict) or not isinstance(self.strategy.get("name"), str):
            raise ContinualRecipeError("{key} must be a mapping with a 'name' (e.g. {name: replay, ratio: 0.1})",
                                       key="strategy")  # fmt: skip
        build_strategy(self.strategy["name"], self.strategy, prefix="strategy")
        for key in FIXED_TRAIN_KEYS:
            if key in self.train:
                raise ContinualRecipeError(
                    "{key} is set by the recipe (top level), not inside train", key=f"train.{key}"
                )
        if isinstance(self.train.get("data"), dict) and "train" in self.train["data"]:
            raise ContinualRecipeError(
                "{key} is each round's data, set by the runner", key="train.data.train"
            )

    def strategy_obj(self) -> Any:
        from instructkit.continual.strategies import build_strategy

        return build_strategy(self.strategy["name"], self.strategy, prefix="strategy")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_recipe(
    data: dict[str, Any], *, source: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> ContinualRecipe:
    """The recipe from a mapping, ``overrides`` (``{"strategy.ratio": 0.2}``, as ``--set`` gives them) set
    first; an error names ``source`` and the dotted key."""
    data = copy.deepcopy(data)
    try:
        for dotted, value in (overrides or {}).items():
            set_dotted(data, dotted, value, ContinualRecipeError, parse=False)
        return load(ContinualRecipe, data, error=ContinualRecipeError)
    except ConfigError as e:
        err = ContinualRecipeError(e.template, key=e.key, where=e.where)
        raise (err.within(source) if source else err) from None


def read_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> ContinualRecipe:
    return load_recipe(read_yaml(path, ContinualRecipeError), source=path, overrides=overrides)
