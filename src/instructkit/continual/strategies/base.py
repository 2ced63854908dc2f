"""What a continual-learning strategy is: a typed set of parameters (a dataclass, each field documented
under it, ranges beside it) registered by name, as the fine-tuning methods are (``train/methods``), that
owns its behaviour through hooks the round runner calls in a fixed order:

1. ``check(cfg)`` once, before any round: rules against the round's training config (the adapters
   strategy needs LoRA);
2. per round: ``round_records`` (what the round trains on: the new task's records, plus replayed ones),
   ``loss_penalty`` and ``token_loss`` (terms added to training: EWC's quadratic anchor, LwF's
   distillation), ``continues_weights`` (start from the previous round's model, or from the base model),
   ``after_training`` (state left for the next round: the Fisher, the adapter), ``outputs`` (the files that
   state is, so a rerun redoes a round that lost them), ``lineage`` (their hashes), ``score_round`` (how
   the round's model or models answer the test prompts).

The runner names no strategy; a new one is a module in this package with ``@register`` and a row in the
strategy matrix of ``tests/test_continual_run.py`` (``tests/test_extension.py`` adds one from outside).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from instructkit.config import ConfigError, check_ranges, load

if TYPE_CHECKING:
    from instructkit.continual.plan import Round
    from instructkit.records import Record

STRATEGIES: dict[str, type[Strategy]] = {}


class ContinualError(ConfigError):
    """A strategy or score matrix that cannot be used as given; the message names the key or cell."""


def register(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES[cls.name] = cls
    return cls


def strategy_class(name: str, prefix: str = "") -> type[Strategy]:
    """The registered class of ``name``; an unknown name is a ContinualError naming ``prefix.name``."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in STRATEGIES:
        raise ContinualError(
            ("{key}: " if prefix else "")
            + f"unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}",
            key=f"{prefix}.name" if prefix else None,
        )
    return STRATEGIES[key]


def build_strategy(name: str, params: dict[str, Any] | None = None, *, prefix: str = "") -> Strategy:
    """The strategy ``name`` with ``params``, loaded like any config (types, ranges, unknown keys named
    under ``prefix``, e.g. ``"strategy"``)."""
    return load(
        strategy_class(name, prefix),
        dict(params or {}),
        prefix=prefix,
        error=ContinualError,
        noun="parameter",
        ignore=("name",),
    )


@dataclass
class RoundRecords:
    """What a round trains on, and how many records came from earlier tasks (the data card's
    ``replay_asked``, ``replayed``, ``replayed_per_task``; ``train_records = kept + replayed``)."""

    records: list[Record]
    asked: int = 0
    replayed: int = 0
    per_task: dict[str, int] = field(default_factory=dict)


@dataclass
class Strategy:
    """Base class: a dataclass whose fields are the strategy's parameters; the hooks' defaults are
    sequential fine-tuning (``naive``)."""

    name: ClassVar[str]
    continues_weights: ClassVar[bool] = True
    """Whether round K starts from round K-1's model (False: every round starts from the base model)."""

    def __post_init__(self) -> None:
        check_ranges(self, error=ContinualError)
        self.validate()

    def validate(self) -> None:
        """Rules across parameters; raise ContinualError naming the parameter (``key=``)."""

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------------------------------- hooks
    def check(self, cfg: Any) -> None:
        """Rules against a round's training config (``TrainConfig``), checked before any round starts;
        raise ``ContinualError`` naming the recipe key (the plan re-raises it as the recipe's error, with
        the recipe file's name)."""

    def round_records(self, rnd: Round, new: list[Record]) -> RoundRecords:
        """The records round ``rnd`` trains on, given the new task's kept records; a strategy that keeps
        state for later rounds (a replay buffer) writes it into ``rnd.folder`` here."""
        return RoundRecords(list(new))

    def loss_penalty(self, rnd: Round) -> Callable[[Any], Any] | None:
        """A term added to the training loss, called with the model (``train(loss_penalty=...)``)."""
        return None

    def token_loss(self, rnd: Round) -> Callable[..., Any] | None:
        """A replacement for the per-token loss (``train(token_loss=...)``)."""
        return None

    def after_training(self, rnd: Round, result: Any) -> None:
        """Called with the training result (model, tokenizer, model_dir) once the round has trained:
        leave the state the next round needs in ``rnd.folder``."""

    def outputs(self, folder: Path, task: str) -> list[Path]:
        """The files the round leaves for the next one (a rerun redoes a round whose files are missing)."""
        return []

    def lineage(self, rnd: Round) -> dict[str, Any]:
        """Keys added to the round's ``lineage.json`` (the hashes of the state in ``outputs``)."""
        return {}

    def score_round(self, rnd: Round) -> dict[str, Any]:
        """``model``, ``scores`` (task name → score) and ``general`` after round ``rnd``: the round's model
        answers every scored task's test prompts."""
        from instructkit.continual import scoring
        from instructkit.evaluate.scoring import load_for_eval

        lm = load_for_eval(str(rnd.folder / "train"))
        return {
            "model": str(rnd.folder / "train" / "model"),
            "scores": {t.spec.name: scoring.score_task(lm, t, rnd.folder, rnd.progress) for t in rnd.scored},
            "general": scoring.score_general(lm, rnd.plan.general, rnd.folder, rnd.progress),
        }
