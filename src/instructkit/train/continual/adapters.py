"""adapters: a fresh LoRA adapter per task on the frozen base model (dynamic architecture). Round k trains
only task k's adapter, from the untouched base, and saves it beside the earlier tasks' adapters
(``round-k/adapters/<task>/``), which it copies unchanged; nothing a later round does can touch an earlier
adapter, so there is no forgetting by construction — what there is to lose is choosing the wrong adapter.

At inference an adapter is chosen per prompt:

* ``route: name`` — the caller says which task a prompt belongs to (the score matrix's column), and that
  task's adapter answers; a task with no adapter yet (the next task) is answered by the base model, and
  so is the general-ability set, which belongs to no task (its delta is then 0 by construction).
* ``route: classifier`` — a small classifier over the prompt text picks the task among those with an
  adapter, trained on those tasks' training prompts (:class:`PromptRouter`); its routing accuracy on the
  test prompts is recorded beside the scores.

The classifier is a nearest centroid by cosine similarity over hashed character n-grams (scikit-learn's
``HashingVectorizer``, ``char_wb`` 2-4-grams, l2-normalised): no vocabulary to fit or save, deterministic,
and trained in well under a second on a few thousand prompts. The centroid step is three lines of numpy
rather than ``sklearn.neighbors.NearestCentroid``, which also estimates per-class deviations that routing
does not use and warns (divides by zero) on the many hashed features a class never varies in; tasks that differ in what they ask (a review to label, a tweet
to tag, a function to write) differ in their character n-grams. It is rebuilt from the training files
whenever it is needed rather than pickled (a pickle is code to trust).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit.config import checked
from instructkit.train.continual.base import ContinualError, Strategy, register

ROUTES = ("name", "classifier")
ADAPTERS_DIR = "adapters"


@register
@dataclass
class Adapters(Strategy):
    name = "adapters"
    route: str = checked("name", choices=ROUTES)
    """How a prompt finds its adapter at scoring time: by its task's name, or by a prompt classifier
    trained on the tasks' training prompts (its routing accuracy is reported)."""
    n_features: int = checked(2**16, ge=16)
    """Hashed n-gram features of the routing classifier (route: classifier)."""


def adapter_dir(round_dir: str | Path, task: str) -> Path:
    return Path(round_dir) / ADAPTERS_DIR / task


def carry_adapters(previous_round: str | Path | None, round_dir: str | Path, tasks: Sequence[str]) -> None:
    """Copy the earlier tasks' adapters from the previous round's folder into this one, byte for byte
    (``copy2``), so each round folder holds every adapter it scores with. A missing one is an error."""
    for task in tasks:
        if previous_round is None:
            raise ContinualError(f"adapters: no earlier round holds the adapter of task {task!r}")
        src = adapter_dir(previous_round, task)
        if not src.is_dir():
            raise ContinualError(
                f"adapters: {src} is missing (the round that trained {task!r} is incomplete)"
            )
        dest = adapter_dir(round_dir, task)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest, copy_function=shutil.copy2)


def route_by_name(adapters: dict[str, Path], task: str) -> Path | None:
    """The adapter of ``task``, or None (no adapter yet: the base model answers)."""
    return adapters.get(task)


class PromptRouter:
    """Which task a prompt belongs to: nearest centroid of hashed character n-grams (module docstring)."""

    def __init__(self, n_features: int = 2**16):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.vectorizer = HashingVectorizer(
            analyzer="char_wb", ngram_range=(2, 4), n_features=n_features, alternate_sign=False, norm="l2"
        )
        self.model: Any = None
        self.tasks: list[str] = []

    def fit(self, prompts: dict[str, Sequence[str]]) -> PromptRouter:
        """``{task: its training prompts}``; one task routes everything to it."""
        import numpy as np

        self.tasks = [t for t, ps in prompts.items() if ps]
        if not self.tasks:
            raise ContinualError("adapters: no training prompts to fit the router on")
        if len(self.tasks) == 1:
            return self
        centroids = []
        for t in self.tasks:
            c = np.asarray(self.vectorizer.transform(list(prompts[t])).mean(axis=0)).ravel()
            centroids.append(c / (np.linalg.norm(c) or 1.0))
        self.model = np.stack(centroids)  # (tasks, features), unit rows
        return self

    def route(self, prompts: Sequence[str]) -> list[str]:
        if not self.tasks:
            raise ContinualError("adapters: the router is not fitted")
        if self.model is None:
            return [self.tasks[0]] * len(prompts)
        similarity = self.vectorizer.transform(list(prompts)) @ self.model.T  # cosine: both sides unit length
        return [self.tasks[int(i)] for i in similarity.argmax(axis=1)]

    def accuracy(self, prompts: dict[str, Sequence[str]]) -> float | None:
        """Share of ``{task: prompts}`` routed to their own task (tasks without an adapter left out)."""
        pairs = [(p, t) for t, ps in prompts.items() if t in self.tasks for p in ps]
        if not pairs:
            return None
        routed = self.route([p for p, _ in pairs])
        return sum(r == t for r, (_, t) in zip(routed, pairs, strict=True)) / len(pairs)
