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
from typing import TYPE_CHECKING, Any

from instructkit.config import checked
from instructkit.continual.strategies.base import ContinualError, Strategy, register

if TYPE_CHECKING:
    from instructkit.continual.plan import Round
    from instructkit.records import Record

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

    continues_weights = False  # every task's adapter trains from the untouched base model

    def check(self, cfg: Any) -> None:
        if cfg.method["name"] != "lora":
            raise ContinualError(
                "{key}: the adapters strategy trains a LoRA adapter per task; use method lora",
                key="method.name",
            )

    def after_training(self, rnd: Round, result: Any) -> None:
        """The earlier tasks' adapters copied from the previous round, and this task's saved beside them."""
        carry_adapters(rnd.prev, rnd.folder, [t.spec.name for t in rnd.plan.tasks[: rnd.k]])
        dest = adapter_dir(rnd.folder, rnd.task.spec.name)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(result.model_dir, dest, copy_function=shutil.copy2)

    def outputs(self, folder: Path, task: str) -> list[Path]:
        return [adapter_dir(folder, task)]

    def score_round(self, rnd: Round) -> dict[str, Any]:
        """Each test prompt answered by the adapter its route picks: the task's own by name (the base model
        for a task with no adapter yet), or the classifier's choice among the trained tasks."""
        from instructkit.continual import scoring

        trained = [t.spec.name for t in rnd.plan.tasks[: rnd.k + 1]]
        adapters = {name: adapter_dir(rnd.folder, name) for name in trained}
        sets: dict[str, tuple[Any, list[Record]]] = {t.spec.name: (t, t.test) for t in rnd.scored}
        if rnd.plan.general is not None:
            sets[GENERAL] = (None, rnd.plan.general)
        routing, chosen = self._route(rnd, adapters, sets)
        replies = _answer(rnd, adapters, sets, chosen)
        out: dict[str, Any] = {"scores": {}, "general": None, "routing": routing}
        for key, (t, records) in sets.items():
            convs, refs = scoring.prompts_and_refs(records)
            preds = [replies[key][i] for i in range(len(records))]
            if t is None:
                scoring.write_predictions(
                    rnd.folder / "predictions" / "general.jsonl", records, convs, refs, preds
                )
                out["general"] = scoring.score(scoring.GENERAL_METRIC, preds, refs, None)
            else:
                scoring.write_predictions(
                    rnd.folder / "predictions" / f"{key}.jsonl", records, convs, refs, preds
                )
                out["scores"][key] = scoring.score(t.spec.metric, preds, refs, t.spec.labels)
        return out

    def _route(
        self, rnd: Round, adapters: dict[str, Path], sets: dict[str, tuple[Any, list[Record]]]
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The routing summary, and per scored set the adapter (or ``BASE_MODEL``) for each record."""
        routing: dict[str, Any] = {"route": self.route}
        router = None
        if self.route == "classifier":
            router = PromptRouter(self.n_features).fit(
                {t.spec.name: [r.prompt_text() for r in t.kept] for t in rnd.plan.tasks[: rnd.k + 1]}
            )
            tests = {t.spec.name: [r.prompt_text() for r in t.test] for t in rnd.scored}
            routing["accuracy"] = router.accuracy(tests)
            routing["tasks"] = router.tasks
        chosen = {}
        for key, (t, records) in sets.items():
            if router is not None:
                chosen[key] = router.route([r.prompt_text() for r in records])
            else:
                own = route_by_name(adapters, key) if t is not None else None
                chosen[key] = [own.name if own else BASE_MODEL] * len(records)
        return routing, chosen


GENERAL = "__general__"
BASE_MODEL = "__base__"


def _answer(
    rnd: Round,
    adapters: dict[str, Path],
    sets: dict[str, tuple[Any, list[Record]]],
    chosen: dict[str, list[str]],
) -> dict[str, dict[int, str]]:
    """Every record's reply, each model (adapter or base) loaded once for all the records routed to it."""
    from instructkit.continual import scoring
    from instructkit.evaluate.scoring import load_for_eval

    jobs: dict[str, list[tuple[str, int]]] = {}  # model key -> [(set key, index)]
    for key, picks in chosen.items():
        for i, c in enumerate(picks):
            jobs.setdefault(c, []).append((key, i))
    replies: dict[str, dict[int, str]] = {key: {} for key in sets}
    recipe = rnd.plan.recipe
    for model_key, items in sorted(jobs.items()):
        model = str(adapters[model_key]) if model_key in adapters else recipe.model
        lm = load_for_eval(model, task=recipe.task)
        for key, (t, records) in sets.items():
            idx = [i for kk, i in items if kk == key]
            if not idx:
                continue
            convs, _ = scoring.prompts_and_refs([records[i] for i in idx])
            tokens = (
                t.spec.new_tokens
                if t is not None
                else scoring.text_metric(scoring.GENERAL_METRIC).reply_tokens
            )
            for i, reply in zip(idx, scoring.replies(lm, convs, tokens, rnd.progress), strict=True):
                replies[key][i] = reply
    return replies


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
