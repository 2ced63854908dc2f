"""``instructkit continual RECIPE.yaml``: train a model on a sequence of tasks, round by round, with a
continual strategy, and score every task after every round (the matrix R).

The run folder ``<output_dir>/<name>/``::

    continual.yaml        the resolved recipe (what ran)
    stages.json           each finished round's input hash (a rerun skips fresh rounds)
    round-base/           the untouched model: scores.json (R[-1], every task and the general set)
    round-K/              round K trains tasks[K]:
      lineage.json          parent round and model, data card hash, strategy and its parameters, buffer hash
      data/train.jsonl      the round's training records (the task's kept records + replayed ones)
      data/card.json        records in = kept + rejected (+ held out for test), per-reason rejects, replay
      data/rejects.jsonl    every record not trained on, with its reason
      buffer.jsonl          replay: the buffer after this task was added (the next round draws from it)
      ewc.safetensors       ewc: the accumulated Fisher and the anchor after this task
      adapters/<task>/      adapters: every task's adapter so far (earlier ones copied byte for byte)
      train/                the training run (config.yaml, checkpoints/, model/)
      scores.json           scores after this round: tasks 0..K+1 and the general set
      predictions/<task>.jsonl
    matrix.json           R (``continual/metrics.py`` ScoreMatrix), and the metrics over it
    report.md, report.html

``round-base`` rather than ``round--1``: the untouched model is not a round of training, and a name with
``--`` reads as a typo. Rounds count from 0 as R's rows do (``R[i][j]``: task j after round i).

Round K is skipped when ``stages.json`` records the same input hash for it and its outputs exist. Its hash
chains the previous round's training hash with the recipe's model, method, strategy, training settings,
seed, the task's spec and file bytes, plus the bytes of every test file it scores, so a change reruns that
round and every later one. A round whose training inputs are unchanged (only a test or the general file
changed) is rescored without retraining: ``trained.json`` records the training hash and the weights' hash. A round killed mid-training resumes from its newest intact checkpoint (the training engine's
resume: optimizer, schedule, RNG, data order) and ends with the weights of an uninterrupted one; its
``started.json`` holds the hash of what it trains on and from, and checkpoints made under another one are
moved aside rather than resumed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from instructkit.continual import scoring
from instructkit.continual.plan import (
    BASE,
    Plan,
    Round,
    check_continual,
    round_name,
    round_train_config,
)
from instructkit.continual.recipe import ContinualRecipe, ContinualRecipeError
from instructkit.files import sha256_file, write_text
from instructkit.formats import write_records
from instructkit.ledger import Stages, digest, tree_digest

MARKERS = ("continual.yaml",)  # written before any round, so a folder of another kind is refused


@dataclass
class ContinualResult:
    run_dir: Path
    ran: list[str]
    skipped: list[str]
    matrix: Any  # ScoreMatrix
    summary: dict[str, Any]
    report_html: Path
    report_md: Path


@dataclass
class _Run:
    plan: Plan
    stages: Stages
    progress: bool
    log: Callable[[str], None]

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir

    @property
    def n(self) -> int:
        return len(self.plan.tasks)

    def round(self, k: int) -> Round:
        prev = self.run_dir / round_name(k - 1) if k > 0 else None
        return Round(self.plan, k, self.run_dir / round_name(k), prev, self.log, self.progress)


def run_continual(
    recipe: ContinualRecipe,
    *,
    recipe_path: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ContinualResult:
    """Run every round that is not fresh (module docstring), then write matrix.json and the report."""
    from instructkit.continual.report import summarize, write_report
    from instructkit.train.rundir import check_run_folder

    problem = check_run_folder(recipe.run_dir, MARKERS)
    if problem:
        raise ContinualRecipeError(f"output_dir/name: {problem}")
    plan = check_continual(recipe, recipe_path)
    run_dir = plan.run_dir
    if (run_dir / "stages.json").exists():
        Stages(
            run_dir, ContinualRecipeError
        )  # a damaged stages.json stops the run before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), run_dir / "continual.yaml")
    run = _Run(plan, Stages(run_dir, ContinualRecipeError), progress, log)

    _base_round(run)
    chain = digest("start")  # training does not depend on the untouched model's scores
    for k in range(run.n):
        chain = _round(run, k, chain)
    matrix = collect_matrix(run_dir, [t.spec.name for t in plan.tasks], has_general=plan.general is not None)
    summary = summarize(matrix)
    doc = {"matrix": matrix.to_dict(), "summary": summary, "strategy": _strategy_info(plan)}
    write_text(json.dumps(doc, indent=2) + "\n", run_dir / "matrix.json")
    html, md = write_report(run_dir)
    return ContinualResult(run_dir, run.stages.ran, run.stages.skipped, matrix, summary, html, md)


def _strategy_info(plan: Plan) -> dict[str, Any]:
    return {"name": plan.strategy.name, "params": plan.strategy.params()}


def _stage(run: _Run, name: str, d: str, outputs: list[Path], work: Callable[[], None]) -> None:
    run.stages.run(name, d, outputs, work, run.log)


def _scoring_digest(run: _Run, upto: int) -> str:
    plan = run.plan
    tests = [t.test_digest for t in plan.tasks[: upto + 1]]
    general = sha256_file(plan.general_path) if plan.general_path else None
    return digest(tests, general)


def _base_round(run: _Run) -> str:
    plan = run.plan
    d = digest("base", plan.recipe.model, plan.recipe.task, _scoring_digest(run, run.n - 1))
    folder = run.run_dir / BASE

    def work() -> None:
        from instructkit.evaluate.scoring import load_for_eval

        lm = load_for_eval(plan.recipe.model, task=plan.recipe.task)
        scores = {t.spec.name: scoring.score_task(lm, t, folder, run.progress) for t in plan.tasks}
        general = scoring.score_general(lm, plan.general, folder, run.progress)
        _write_scores(folder, {"round": -1, "label": BASE, "model": plan.recipe.model, "trained_task": None,
                               "scores": scores, "general": general})  # fmt: skip

    _stage(run, BASE, d, [folder / "scores.json"], work)
    return d


def _write_scores(folder: Path, doc: dict[str, Any]) -> None:
    write_text(json.dumps(doc, indent=2) + "\n", folder / "scores.json")


# ------------------------------------------------------------------------------------------------ rounds
def _round(run: _Run, k: int, chain: str) -> str:
    """Round k unless fresh; returns its training digest, which the next round's chains (scoring inputs
    are hashed into the round's own stage digest only, so a new test or general file rescores the rounds
    without retraining them)."""
    plan, recipe = run.plan, run.plan.recipe
    rnd = run.round(k)
    d_train = digest(
        "train", chain, recipe.model, recipe.task, recipe.method, _strategy_info(plan), recipe.train,
        recipe.seed, rnd.task.digest,
    )  # fmt: skip
    d_round = digest("round", d_train, _scoring_digest(run, min(k + 1, run.n - 1)))
    folder = rnd.folder
    outputs = [
        folder / "scores.json",
        folder / "lineage.json",
        folder / "trained.json",
        folder / "train" / "model" / "instructkit.json",
        *plan.strategy.outputs(folder, rnd.task.spec.name),
    ]
    _stage(run, rnd.name, d_round, outputs, lambda: _train_round(run, rnd, d_train))
    return d_train


def _is_trained(rnd: Round, d_train: str) -> bool:
    """The round's training (and its strategy's state) finished with these inputs and the model folder is
    the one it left: then a rerun for new scoring inputs only rescores."""
    try:
        done = json.loads((rnd.folder / "trained.json").read_text())
    except (OSError, ValueError):
        return False
    model = rnd.folder / "train" / "model"
    if not all(p.exists() for p in rnd.plan.strategy.outputs(rnd.folder, rnd.task.spec.name)):
        return False
    return done.get("train") == d_train and model.is_dir() and done.get("model_digest") == tree_digest(model)


def _train_round(run: _Run, rnd: Round, d_train: str) -> None:
    from instructkit.train.checkpoints import move_aside

    plan, folder, prev = run.plan, rnd.folder, rnd.prev
    run.log(f"[{rnd.name}] task {rnd.k + 1}/{run.n}: {rnd.task.spec.name} ({plan.strategy.name})")

    # 1. the round's data (and the state a strategy keeps for the next round, e.g. a replay buffer)
    train_file = _round_data(rnd)

    # 2. checkpoints of other inputs are moved aside; same inputs resume
    started = folder / "started.json"
    if started.exists() and json.loads(started.read_text()).get("train") != d_train:
        move_aside(folder / "train" / "checkpoints", run.log, "the round's inputs changed")
    write_text(json.dumps({"train": d_train}) + "\n", started)

    init_from = prev / "train" / "model" if plan.strategy.continues_weights and prev is not None else None
    if _is_trained(rnd, d_train):
        run.log(f"[{rnd.name}] training up to date (same inputs and weights); scoring only")
    else:
        _train(rnd, d_train, train_file, init_from)
    write_text(json.dumps(_lineage(rnd, d_train, init_from), indent=2) + "\n", folder / "lineage.json")

    doc: dict[str, Any] = {"round": rnd.k, "label": rnd.name, "trained_task": rnd.task.spec.name}
    doc.update(plan.strategy.score_round(rnd))
    _write_scores(folder, doc)


def _lineage(rnd: Round, d_train: str, init_from: Path | None) -> dict[str, Any]:
    plan, folder = rnd.plan, rnd.folder
    card = folder / "data" / "card.json"
    return {
        "round": rnd.k,
        "task": rnd.task.spec.name,
        "strategy": _strategy_info(plan),
        "method": plan.recipe.method,
        "base_model": plan.recipe.model,
        "parent": {
            "round": round_name(rnd.k - 1) if rnd.prev is not None else BASE,
            "model": str(init_from) if init_from else plan.recipe.model,
            "model_digest": tree_digest(init_from) if init_from else None,
            "continues_weights": bool(init_from),
        },
        "data_card": str(card),
        "data_card_sha256": sha256_file(card),
        "train_sha256": json.loads(card.read_text())["train_sha256"],
        **plan.strategy.lineage(rnd),
        "model_dir": str(folder / "train" / "model"),
        "model_digest": tree_digest(folder / "train" / "model"),
        "inputs": d_train,
        "seed": plan.recipe.seed,
    }


def _train(rnd: Round, d_train: str, train_file: Path, init_from: Path | None) -> None:
    """Train the round (resuming its checkpoints) with the strategy's loss terms, let the strategy leave
    its state for the next round, then write ``trained.json``."""
    from instructkit.train.training import train

    strategy = rnd.plan.strategy
    cfg = round_train_config(rnd.plan.recipe, rnd.folder, train_file)
    result = train(
        cfg,
        resume=True,
        restart_if_changed=True,
        progress=rnd.progress,
        log=rnd.log,
        loss_penalty=strategy.loss_penalty(rnd),
        token_loss=strategy.token_loss(rnd),
        init_from=init_from,
    )
    strategy.after_training(rnd, result)
    del result

    model = rnd.folder / "train" / "model"
    write_text(
        json.dumps({"train": d_train, "model_digest": tree_digest(model)}) + "\n", rnd.folder / "trained.json"
    )


def _round_data(rnd: Round) -> Path:
    """Write data/train.jsonl (the strategy's ``round_records``), rejects.jsonl and card.json."""
    task = rnd.task
    new = list(task.kept)
    got = rnd.plan.strategy.round_records(rnd, new)
    data_dir = rnd.folder / "data"
    train_file = data_dir / "train.jsonl"
    write_records(got.records, train_file)
    rejects = [{"reason": why, "record": rec.to_dict()} for rec, why in task.rejected]
    write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects), data_dir / "rejects.jsonl")
    card = {
        "task": task.spec.name,
        "round": rnd.k,
        "source": {"path": str(task.train_path), "sha256": sha256_file(task.train_path)},
        "records_in": task.records_in,
        "held_out_for_test": task.held_out,
        "kept": len(new),
        "rejected": dict(Counter(why for _, why in task.rejected)),
        "replay_asked": got.asked,
        "replayed": got.replayed,
        "replayed_per_task": got.per_task,
        "train_records": len(got.records),
        "train_sha256": sha256_file(train_file),
        "rule": "records_in = kept + sum(rejected) + held_out_for_test; train_records = kept + replayed",
    }
    assert card["records_in"] == card["kept"] + sum(card["rejected"].values()) + card["held_out_for_test"]
    write_text(json.dumps(card, indent=2) + "\n", data_dir / "card.json")
    return train_file


# ------------------------------------------------------------------------------------------------ matrix
def collect_matrix(run_dir: Path, tasks: list[str], has_general: bool) -> Any:
    """R from the round folders' scores.json (a cell not scored is None)."""
    from instructkit.continual.metrics import ScoreMatrix

    def read(folder: Path) -> dict[str, Any]:
        path = folder / "scores.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ContinualRecipeError(
                f"{path}: cannot be read ({e}); delete the round folder to rerun it"
            ) from None

    base = read(run_dir / BASE)
    rounds = [read(run_dir / round_name(k)) for k in range(len(tasks))]

    def row(doc: dict[str, Any]) -> list[float | None]:
        return [doc["scores"][t]["score"] if t in doc.get("scores", {}) else None for t in tasks]

    def gen(doc: dict[str, Any]) -> float | None:
        return doc["general"]["score"] if doc.get("general") else None

    return ScoreMatrix(
        tasks=tasks,
        untouched=row(base),
        rounds=[row(d) for d in rounds],
        general_untouched=gen(base) if has_general else None,
        general=[gen(d) for d in rounds] if has_general else [],
    )
