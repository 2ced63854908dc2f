"""Forgetting metrics over the score matrix of a task sequence.

``R[i][j]`` is the score on task ``j`` after round ``i`` (round ``i`` trains task ``i``; rounds and tasks
count from 0), and ``untouched[j]`` is the untouched model's score on task ``j`` (the issue's row
``R[-1]``). ``T`` is the number of finished rounds; every metric is over the tasks trained so far, so a
finished run (``T`` = number of tasks) gives the papers' numbers and a partial one gives them for its
prefix. Papers differ on these definitions, so each function says which it computes and from where; a
metric that is undefined (no earlier task when ``T`` = 1) is ``None``, never NaN.

Scores are on whatever scale the task's metric uses (the report shows them on 0-100); a cell that was
not scored is ``None``, and a metric that needs it raises ContinualError naming the cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from instructkit.continual.strategies.base import ContinualError

Cell = float | None


@dataclass
class ScoreMatrix:
    """The scores of one continual run: ``rounds[i][j]`` (R[i][j]) and ``untouched[j]``, one column per
    task in ``tasks``; optionally a general-ability score for the untouched model and after each round."""

    tasks: list[str]
    untouched: list[Cell]
    rounds: list[list[Cell]] = field(default_factory=list)
    general_untouched: Cell = None
    general: list[Cell] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.tasks)
        if n == 0:
            raise ContinualError("score matrix: no tasks")
        if len(set(self.tasks)) != n:
            raise ContinualError(f"score matrix: task names repeat: {self.tasks}")
        if len(self.untouched) != n:
            raise ContinualError(
                f"score matrix: the untouched row has {len(self.untouched)} scores for {n} tasks"
            )
        if len(self.rounds) > n:
            raise ContinualError(
                f"score matrix: {len(self.rounds)} rounds for {n} tasks (one round per task)"
            )
        for i, row in enumerate(self.rounds):
            if len(row) != n:
                raise ContinualError(f"score matrix: round {i} has {len(row)} scores for {n} tasks (ragged)")
        if self.general and len(self.general) != len(self.rounds):
            raise ContinualError(
                f"score matrix: {len(self.general)} general-ability scores for {len(self.rounds)} rounds"
            )
        for where, value in self._cells():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ContinualError(f"score matrix: {where} is {value!r}, not a number")
            if value is not None and not math.isfinite(value):
                raise ContinualError(f"score matrix: {where} is {value}, not a finite number")

    def _cells(self) -> list[tuple[str, Any]]:
        cells = [(f"untouched[{self.tasks[j]}]", v) for j, v in enumerate(self.untouched)]
        for i, row in enumerate(self.rounds):
            cells += [(f"R[{i}][{self.tasks[j]}]", v) for j, v in enumerate(row)]
        cells += [("general_untouched", self.general_untouched)]
        cells += [(f"general[{i}]", v) for i, v in enumerate(self.general)]
        return cells

    @property
    def n_rounds(self) -> int:
        return len(self.rounds)

    def at(self, i: int, j: int) -> float:
        """R[i][j] (``i`` = -1: the untouched model), raising when that cell was not scored."""
        value = self.untouched[j] if i == -1 else self.rounds[i][j]
        if value is None:
            row = "untouched" if i == -1 else f"R[{i}]"
            raise ContinualError(f"score matrix: {row}[{self.tasks[j]}] was not scored and is needed here")
        return float(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": list(self.tasks),
            "untouched": list(self.untouched),
            "rounds": [list(r) for r in self.rounds],
            "general_untouched": self.general_untouched,
            "general": list(self.general),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreMatrix:
        known = {"tasks", "untouched", "rounds", "general_untouched", "general"}
        if not isinstance(data, dict):
            raise ContinualError(f"score matrix must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - known)
        if unknown:
            raise ContinualError(
                f"score matrix: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        for key in ("tasks", "untouched"):
            if key not in data:
                raise ContinualError(f"score matrix: missing key {key!r}")
        return cls(
            tasks=list(data["tasks"]),
            untouched=list(data["untouched"]),
            rounds=[list(r) for r in data.get("rounds", [])],
            general_untouched=data.get("general_untouched"),
            general=list(data.get("general", [])),
        )


def _need_rounds(r: ScoreMatrix, at_least: int, metric: str) -> None:
    if r.n_rounds < at_least:
        raise ContinualError(
            f"{metric}: needs at least {at_least} finished round(s), the matrix has {r.n_rounds}"
        )


def average_accuracy(r: ScoreMatrix) -> float:
    """ACC = (1/T) Σ_{j<T} R[T-1][j]: the mean score over the tasks trained so far, after the last round.
    Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning" (NeurIPS 2017), eq. 2 (ACC)."""
    _need_rounds(r, 1, "ACC")
    t = r.n_rounds
    return sum(r.at(t - 1, j) for j in range(t)) / t


def backward_transfer(r: ScoreMatrix) -> float | None:
    """BWT = (1/(T-1)) Σ_{j<T-1} (R[T-1][j] − R[j][j]): how the last round changed the score on each earlier
    task against the score just after learning it (negative: forgetting). Lopez-Paz & Ranzato 2017, eq. 3.
    None when T = 1 (no earlier task)."""
    _need_rounds(r, 1, "BWT")
    t = r.n_rounds
    if t == 1:
        return None
    return sum(r.at(t - 1, j) - r.at(j, j) for j in range(t - 1)) / (t - 1)


def forward_transfer(r: ScoreMatrix) -> float | None:
    """FWT = (1/(T-1)) Σ_{0<j<T} (R[j-1][j] − untouched[j]): how much the rounds before task j raised its
    score before it was trained, against the untouched model. Lopez-Paz & Ranzato 2017, eq. 4, with the
    untouched model's score as their random-initialisation baseline b̄_j (a fine-tuning run starts from a
    pretrained model, not a random one). None when T = 1."""
    _need_rounds(r, 1, "FWT")
    t = r.n_rounds
    if t == 1:
        return None
    return sum(r.at(j - 1, j) - r.at(-1, j) for j in range(1, t)) / (t - 1)


def forgetting(r: ScoreMatrix) -> dict[str, float]:
    """Forgetting of each earlier task j < T-1: f_j = max_{j≤i<T-1} R[i][j] − R[T-1][j], the drop from its
    best score since it was learned to its score now (≥ 0). Chaudhry et al., "Riemannian Walk for
    Incremental Learning" (ECCV 2018), eq. 5; their max runs over every earlier round, this one over the
    rounds from j's own (before it, the model had not learned j, and the untouched model's score on a task
    is not knowledge to forget). Empty when T = 1."""
    _need_rounds(r, 1, "forgetting")
    t = r.n_rounds
    return {r.tasks[j]: max(r.at(i, j) for i in range(j, t - 1)) - r.at(t - 1, j) for j in range(t - 1)}


def average_forgetting(r: ScoreMatrix) -> float | None:
    """Mean of :func:`forgetting` over the earlier tasks (Chaudhry et al. 2018, eq. 6); None when T = 1."""
    per_task = forgetting(r)
    return sum(per_task.values()) / len(per_task) if per_task else None


def not_learned(r: ScoreMatrix) -> dict[str, dict[str, float]]:
    """The tasks whose own round did not raise their score: R[j][j] ≤ R[j-1][j] (the untouched model's
    score for j = 0), each with its score before and after that round. A run where a task learned
    nothing can still show no forgetting and a positive BWT (nothing learned, nothing to lose), so the
    report names these tasks above its other numbers. Cells not scored are left out."""
    out = {}
    for j in range(r.n_rounds):
        before = r.untouched[j] if j == 0 else r.rounds[j - 1][j]
        after = r.rounds[j][j]
        if before is not None and after is not None and after <= before:
            out[r.tasks[j]] = {"before": float(before), "after": float(after)}
    return out


def general_delta(r: ScoreMatrix) -> float:
    """General-ability delta = general[T-1] − general_untouched: what the rounds cost (or gained) on a
    general set no round trains on; negative is lost general ability."""
    _need_rounds(r, 1, "general-ability delta")
    if r.general_untouched is None or not r.general or r.general[-1] is None:
        raise ContinualError("general-ability delta: the matrix has no general-ability scores")
    return float(r.general[-1]) - float(r.general_untouched)
