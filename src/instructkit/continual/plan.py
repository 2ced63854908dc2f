"""What a continual run will do, checked before any round starts: each task's records split and filtered
once (``TaskData``), the training config a round gets, the strategy checked against it (``Plan``), and the
view of one round a strategy's hooks receive (``Round``).

Everything here is read-only over the recipe: an error names the file and the recipe key
(``tasks[1].test``), and nothing is written until the whole plan holds.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit.continual import scoring
from instructkit.continual.recipe import ContinualRecipe, ContinualRecipeError, TaskSpec
from instructkit.continual.strategies.base import ContinualError
from instructkit.files import sha256_file
from instructkit.formats import read_records
from instructkit.ledger import digest
from instructkit.records import Record

BASE = "round-base"
REJECT_NOT_CHAT = "not_chat_with_reply"
REJECT_IN_TEST = "prompt_in_test_split"


def round_name(k: int) -> str:
    return f"round-{k}"


def resolve(p: str, base: Path) -> Path:
    """As given when it exists (relative to the working directory), else relative to the recipe's folder."""
    path = Path(p)
    return path if path.exists() or path.is_absolute() else base / path


@dataclass
class TaskData:
    """One task's records, split and filtered once for the whole run."""

    spec: TaskSpec
    train_path: Path
    test_path: Path | None
    kept: list[Record]
    rejected: list[tuple[Record, str]]
    held_out: int
    test: list[Record]
    records_in: int

    @property
    def digest(self) -> str:
        return digest(
            dataclasses.asdict(self.spec),
            sha256_file(self.train_path),
            sha256_file(self.test_path) if self.test_path else None,
        )

    @property
    def test_digest(self) -> str:
        return digest(self.spec.name, self.spec.metric, self.spec.labels, self.spec.new_tokens, self.digest)


@dataclass
class Plan:
    recipe: ContinualRecipe
    strategy: Any  # strategies.Strategy
    tasks: list[TaskData]
    general: list[Record] | None
    general_path: Path | None
    train_base: dict[str, Any]  # the training config every round starts from (data.train set per round)

    @property
    def run_dir(self) -> Path:
        return self.recipe.run_dir


@dataclass
class Round:
    """Round ``k`` as a strategy's hooks see it: the plan, the round's folder, the previous round's folder
    (None for round 0) and the run's log and progress settings."""

    plan: Plan
    k: int
    folder: Path
    prev: Path | None
    log: Callable[[str], None]
    progress: bool

    @property
    def task(self) -> TaskData:
        return self.plan.tasks[self.k]

    @property
    def scored(self) -> list[TaskData]:
        """The tasks scored after this round: those trained so far and the next one."""
        return self.plan.tasks[: self.k + 2]

    @property
    def name(self) -> str:
        return round_name(self.k)

    def train_config(self) -> Any:
        """The round's training config (as ``round_train_config`` builds it for the runner)."""
        return round_train_config(self.plan.recipe, self.folder, self.folder / "data" / "train.jsonl")


def read(path: Path, fmt: str | None, key: str) -> list[Record]:
    if not path.is_file():
        raise ContinualRecipeError(f"{{key}}: no such file {path}", key=key)
    return read_records(path, fmt=fmt)


def task_data(i: int, spec: TaskSpec, base: Path, seed: int) -> TaskData:
    """Task ``i``'s records: its test split (a file, or ``test_share`` held out), and the training records
    kept (chat records with a reply, whose prompt is not a test prompt) or rejected with the reason."""
    from instructkit.train.training import split_train_val

    key = f"tasks[{i}]"
    train_path = resolve(spec.train, base)
    records = read(train_path, spec.format, f"{key}.train")
    records_in = len(records)
    test_path = None
    if spec.test is not None:
        test_path = resolve(spec.test, base)
        test = read(test_path, spec.format, f"{key}.test")
        pool, held_out = records, 0
    else:
        pool, test = split_train_val(records, spec.test_share or 0.0, seed)
        held_out = len(test)
    if not test:
        raise ContinualRecipeError("{key}: the test split is empty", key=f"{key}.test")
    try:
        _, refs = scoring.prompts_and_refs(test)
    except ValueError as e:
        raise ContinualRecipeError(f"{{key}}: test split: {e}", key=f"{key}.test") from None
    if spec.labels and scoring.text_metric(spec.metric).labelled:
        stray = sorted({r for r in refs if r not in spec.labels})
        if stray:
            raise ContinualRecipeError(
                f"{{key}}: test references hold labels not in the list: {', '.join(stray[:5])}",
                key=f"{key}.labels",
            )
    test_prompts = {r.prompt_text() for r in test}
    kept, rejected = [], []
    for rec in pool:
        if rec.messages is None or not rec.messages or rec.messages[-1].role != "assistant":
            rejected.append((rec, REJECT_NOT_CHAT))
        elif rec.prompt_text() in test_prompts:
            rejected.append((rec, REJECT_IN_TEST))
        else:
            kept.append(rec)
    if not kept:
        reasons = Counter(r for _, r in rejected)
        raise ContinualRecipeError(f"{{key}}: no training record left ({dict(reasons)})", key=f"{key}.train")
    return TaskData(spec, train_path, test_path, kept, rejected, held_out, test, records_in)


def round_train_config(recipe: ContinualRecipe, round_dir: Path, train_file: Path) -> Any:
    """The training config of one round: ``train`` + the recipe's model/task/method/seed + the round's
    data and folder. An error names ``train.KEY``."""
    from instructkit.config import ConfigError, set_dotted
    from instructkit.train.config import TrainConfig

    data = copy.deepcopy(recipe.train)
    fixed = {
        "model": recipe.model,
        "task": recipe.task,
        "method": copy.deepcopy(recipe.method),
        "seed": recipe.seed,
        "name": "train",
        "output_dir": str(round_dir),
        "data.train": str(train_file),
    }
    for k, v in fixed.items():
        set_dotted(data, k, v, parse=False)
    try:
        cfg = TrainConfig.from_dict(data)
        cfg.validate()
    except ConfigError as e:
        if e.key and e.key.startswith("method"):
            raise ContinualRecipeError(e.template, key=e.key) from None
        if e.key is None:
            raise ContinualRecipeError(f"train: {e.template}") from None
        raise ContinualRecipeError(e.template, key=f"train.{e.key}") from None
    return cfg


def check_continual(recipe: ContinualRecipe, recipe_path: str | Path | None = None) -> Plan:
    """Everything a run needs, checked before any round starts: each task's files and records, the
    training config of a round, the strategy against it (``Strategy.check``). An error names the file
    and key."""
    from instructkit.models.registry import check_model

    base = Path(recipe_path).parent if recipe_path else Path.cwd()
    where = str(recipe_path or "recipe")
    try:
        strategy = recipe.strategy_obj()
        try:
            strategy.check(round_train_config(recipe, recipe.run_dir / round_name(0), Path("train.jsonl")))
        except ContinualError as e:
            raise ContinualRecipeError(e.template, key=e.key) from None
        tasks = [task_data(i, t, base, recipe.seed) for i, t in enumerate(recipe.tasks)]
        general = general_path = None
        if recipe.general:
            general_path = resolve(recipe.general, base)
            general = read(general_path, None, "general")
            try:
                scoring.prompts_and_refs(general)
            except ValueError as e:
                raise ContinualRecipeError(f"{{key}}: {e}", key="general") from None
    except ContinualRecipeError as e:
        raise e.within(where) from None
    check_model(recipe.model)
    return Plan(recipe, strategy, tasks, general, general_path, copy.deepcopy(recipe.train))
