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
    matrix.json           R (``train/continual/metrics.py`` ScoreMatrix), and the metrics over it
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

import copy
import dataclasses
import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from instructkit.continual_run import scoring
from instructkit.continual_run.recipe import ContinualRecipe, ContinualRecipeError, TaskSpec
from instructkit.formats import read_records, write_records
from instructkit.formats.io import sha256_file, write_text
from instructkit.records import Record

BASE = "round-base"
MARKERS = ("continual.yaml",)  # written before any round, so a folder of another kind is refused
REJECT_NOT_CHAT = "not_chat_with_reply"
REJECT_IN_TEST = "prompt_in_test_split"


def round_name(k: int) -> str:
    return f"round-{k}"


def digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def tree_digest(folder: Path) -> str:
    """Content hash of a folder's files (relative names + bytes)."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(sha256_file(p).encode())
    return h.hexdigest()


def _resolve(p: str, base: Path) -> Path:
    """As given when it exists (relative to the working directory), else relative to the recipe's folder."""
    path = Path(p)
    return path if path.exists() or path.is_absolute() else base / path


# ------------------------------------------------------------------------------------------------- plan
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
    strategy: Any
    tasks: list[TaskData]
    general: list[Record] | None
    general_path: Path | None
    train_base: dict[str, Any]  # the training config every round starts from (data.train set per round)

    @property
    def run_dir(self) -> Path:
        return self.recipe.run_dir


def _read(path: Path, fmt: str | None, key: str) -> list[Record]:
    if not path.is_file():
        raise ContinualRecipeError(f"{{key}}: no such file {path}", key=key)
    return read_records(path, fmt=fmt)


def _task_data(i: int, spec: TaskSpec, base: Path, seed: int) -> TaskData:
    from instructkit.train.training import split_train_val

    key = f"tasks[{i}]"
    train_path = _resolve(spec.train, base)
    records = _read(train_path, spec.format, f"{key}.train")
    records_in = len(records)
    test_path = None
    if spec.test is not None:
        test_path = _resolve(spec.test, base)
        test = _read(test_path, spec.format, f"{key}.test")
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
    if spec.metric == "accuracy" and spec.labels:
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
    training config of a round, the strategy against the method. An error names the file and key."""
    from instructkit.models.registry import check_model

    base = Path(recipe_path).parent if recipe_path else Path.cwd()
    where = str(recipe_path or "recipe")
    try:
        strategy = recipe.strategy_obj()
        cfg = round_train_config(recipe, recipe.run_dir / round_name(0), Path("train.jsonl"))
        if strategy.name == "adapters" and cfg.method["name"] != "lora":
            raise ContinualRecipeError(
                "{key}: the adapters strategy trains a LoRA adapter per task; use method lora",
                key="method.name",
            )
        if strategy.name == "lwf" and not cfg.trained_positions_head:
            raise ContinualRecipeError(
                "{key}: lwf distils at the trained positions only; leave it true",
                key="train.trained_positions_head",
            )
        tasks = [_task_data(i, t, base, recipe.seed) for i, t in enumerate(recipe.tasks)]
        general = general_path = None
        if recipe.general:
            general_path = _resolve(recipe.general, base)
            general = _read(general_path, None, "general")
            try:
                scoring.prompts_and_refs(general)
            except ValueError as e:
                raise ContinualRecipeError(f"{{key}}: {e}", key="general") from None
    except ContinualRecipeError as e:
        raise e.within(where) from None
    check_model(recipe.model)
    train_base = copy.deepcopy(recipe.train)
    return Plan(recipe, strategy, tasks, general, general_path, train_base)


# -------------------------------------------------------------------------------------------- results
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
    stages: Any
    progress: bool
    log: Callable[[str], None]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir

    @property
    def n(self) -> int:
        return len(self.plan.tasks)


def run_continual(
    recipe: ContinualRecipe,
    *,
    recipe_path: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ContinualResult:
    """Run every round that is not fresh (module docstring), then write matrix.json and the report."""
    from instructkit.recipe import Stages
    from instructkit.train.rundir import check_run_folder

    problem = check_run_folder(recipe.run_dir, MARKERS)
    if problem:
        raise ContinualRecipeError(f"output_dir/name: {problem}")
    plan = check_continual(recipe, recipe_path)
    run_dir = plan.run_dir
    if (run_dir / "stages.json").exists():
        Stages(run_dir)  # a damaged stages.json stops the run before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), run_dir / "continual.yaml")
    run = _Run(plan, Stages(run_dir), progress, log)

    _base_round(run)
    chain = digest("start")  # training does not depend on the untouched model's scores
    for k in range(run.n):
        chain = _round(run, k, chain)
    matrix = collect_matrix(run_dir, [t.spec.name for t in plan.tasks], has_general=plan.general is not None)
    from instructkit.continual_run.report import summarize, write_report

    summary = summarize(matrix)
    write_text(
        json.dumps(
            {"matrix": matrix.to_dict(), "summary": summary, "strategy": _strategy_info(plan)}, indent=2
        )
        + "\n",
        run_dir / "matrix.json",
    )
    html, md = write_report(run_dir)
    return ContinualResult(run_dir, run.ran, run.skipped, matrix, summary, html, md)


def _strategy_info(plan: Plan) -> dict[str, Any]:
    return {"name": plan.strategy.name, "params": plan.strategy.params()}


def _stage(run: _Run, name: str, d: str, outputs: list[Path], work: Callable[[], None]) -> None:
    if run.stages.fresh(name, d, outputs):
        run.log(f"[{name}] up to date, skipped")
        run.skipped.append(name)
        return
    run.log(f"[{name}] running")
    t0 = time.perf_counter()
    work()
    run.stages.finish(name, d, time.perf_counter() - t0)
    run.ran.append(name)


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
        scores = {t.spec.name: _score_task(run, lm, t, folder) for t in plan.tasks}
        general = _score_general(run, lm, folder)
        _write_scores(folder, {"round": -1, "label": BASE, "model": plan.recipe.model, "trained_task": None,
                               "scores": scores, "general": general})  # fmt: skip

    _stage(run, BASE, d, [folder / "scores.json"], work)
    return d


def _score_task(run: _Run, lm: Any, t: TaskData, folder: Path) -> dict[str, Any]:
    convs, refs = scoring.prompts_and_refs(t.test)
    preds = scoring.replies(lm, convs, t.spec.new_tokens, run.progress)
    _write_predictions(folder / "predictions" / f"{t.spec.name}.jsonl", t.test, convs, refs, preds)
    return scoring.score(t.spec.metric, preds, refs, t.spec.labels)


def _score_general(run: _Run, lm: Any, folder: Path) -> dict[str, Any] | None:
    if run.plan.general is None:
        return None
    convs, refs = scoring.prompts_and_refs(run.plan.general)
    preds = scoring.replies(lm, convs, scoring_new_tokens("rouge"), run.progress)
    _write_predictions(folder / "predictions" / "general.jsonl", run.plan.general, convs, refs, preds)
    return scoring.score("rouge", preds, refs, None)


def scoring_new_tokens(metric: str) -> int:
    from instructkit.continual_run.recipe import DEFAULT_NEW_TOKENS

    return DEFAULT_NEW_TOKENS[metric]


def _write_predictions(
    path: Path, records: list[Record], convs: list, refs: list[str], preds: list[str]
) -> None:
    lines = [
        json.dumps(
            {"id": r.id, "prompt": c[-1]["content"], "reference": ref, "prediction": p}, ensure_ascii=False
        )
        for r, c, ref, p in zip(records, convs, refs, preds, strict=True)
    ]
    write_text("".join(line + "\n" for line in lines), path)


def _write_scores(folder: Path, doc: dict[str, Any]) -> None:
    write_text(json.dumps(doc, indent=2) + "\n", folder / "scores.json")


# ------------------------------------------------------------------------------------------------ rounds
def _round(run: _Run, k: int, chain: str) -> str:
    """Round k unless fresh; returns its training digest, which the next round's chains (scoring inputs
    are hashed into the round's own stage digest only, so a new test or general file rescores the rounds
    without retraining them)."""
    plan, recipe = run.plan, run.plan.recipe
    task = plan.tasks[k]
    folder = run.run_dir / round_name(k)
    prev = run.run_dir / round_name(k - 1) if k > 0 else None
    d_train = digest(
        "train", chain, recipe.model, recipe.task, recipe.method, _strategy_info(plan), recipe.train,
        recipe.seed, task.digest,
    )  # fmt: skip
    d_round = digest("round", d_train, _scoring_digest(run, min(k + 1, run.n - 1)))
    outputs = [
        folder / "scores.json",
        folder / "lineage.json",
        folder / "trained.json",
        folder / "train" / "model" / "instructkit.json",
        *_strategy_outputs(plan.strategy.name, folder, task.spec.name),
    ]
    _stage(run, round_name(k), d_round, outputs, lambda: _train_round(run, k, folder, prev, d_train))
    return d_train


def _strategy_outputs(name: str, folder: Path, task: str) -> list[Path]:
    """What a strategy's round leaves for the next one (a rerun redoes a round that lost it)."""
    from instructkit.train.continual.adapters import adapter_dir

    return {
        "replay": [folder / "buffer.jsonl"],
        "ewc": [folder / "ewc.safetensors"],
        "adapters": [adapter_dir(folder, task)],
    }.get(name, [])


def _is_trained(folder: Path, d_train: str, strategy: str, task: str) -> bool:
    """The round's training (and its strategy's state) finished with these inputs and the model folder is
    the one it left: then a rerun for new scoring inputs only rescores."""
    try:
        done = json.loads((folder / "trained.json").read_text())
    except (OSError, ValueError):
        return False
    model = folder / "train" / "model"
    if not all(p.exists() for p in _strategy_outputs(strategy, folder, task)):
        return False
    return done.get("train") == d_train and model.is_dir() and done.get("model_digest") == tree_digest(model)


def _train_round(run: _Run, k: int, folder: Path, prev: Path | None, d_train: str) -> None:
    from instructkit.train.checkpoints import move_aside

    plan = run.plan
    strategy = plan.strategy
    task = plan.tasks[k]
    name = strategy.name
    run.log(f"[{round_name(k)}] task {k + 1}/{run.n}: {task.spec.name} ({name})")

    # 1. the round's data (and the replay buffer this round leaves for the next)
    train_file, card, buffer_hash = _round_data(run, k, folder, prev)

    # 2. checkpoints of other inputs are moved aside; same inputs resume
    started = folder / "started.json"
    if started.exists() and json.loads(started.read_text()).get("train") != d_train:
        move_aside(folder / "train" / "checkpoints", run.log, "the round's inputs changed")
    write_text(json.dumps({"train": d_train}) + "\n", started)

    continues = name != "adapters" and prev is not None
    init_from = prev / "train" / "model" if continues else None
    if _is_trained(folder, d_train, name, task.spec.name):
        run.log(f"[{round_name(k)}] training up to date (same inputs and weights); scoring only")
    else:
        _train(run, k, folder, prev, d_train, train_file, init_from)

    lineage = {
        "round": k,
        "task": task.spec.name,
        "strategy": _strategy_info(plan),
        "method": plan.recipe.method,
        "base_model": plan.recipe.model,
        "parent": {
            "round": round_name(k - 1) if prev is not None else BASE,
            "model": str(init_from) if init_from else plan.recipe.model,
            "model_digest": tree_digest(init_from) if init_from else None,
            "continues_weights": bool(init_from),
        },
        "data_card": str(folder / "data" / "card.json"),
        "data_card_sha256": sha256_file(folder / "data" / "card.json"),
        "train_sha256": card["train_sha256"],
        "buffer": str(folder / "buffer.jsonl") if buffer_hash else None,
        "buffer_sha256": buffer_hash,
        "ewc_state_sha256": sha256_file(folder / "ewc.safetensors")
        if (folder / "ewc.safetensors").exists()
        else None,
        "model_dir": str(folder / "train" / "model"),
        "model_digest": tree_digest(folder / "train" / "model"),
        "inputs": d_train,
        "seed": plan.recipe.seed,
    }
    write_text(json.dumps(lineage, indent=2) + "\n", folder / "lineage.json")
    _score_round(run, k, folder)


def _train(
    run: _Run, k: int, folder: Path, prev: Path | None, d_train: str, train_file: Path, init_from: Path | None
) -> None:
    """Train round k (resuming its checkpoints), then leave the strategy's state for the next round and
    ``trained.json``."""
    from instructkit.train.training import train

    plan, strategy = run.plan, run.plan.strategy
    name, task = strategy.name, plan.tasks[k]
    cfg = round_train_config(plan.recipe, folder, train_file)
    penalty = _ewc_penalty(strategy, prev) if name == "ewc" and prev is not None else None
    token_loss = _lwf_loss(run, strategy, prev) if name == "lwf" else None
    result = train(
        cfg,
        resume=True,
        restart_if_changed=True,
        progress=run.progress,
        log=run.log,
        loss_penalty=penalty,
        token_loss=token_loss,
        init_from=init_from,
    )
    if name == "ewc":
        _consolidate_ewc(run, strategy, task, result, prev, folder)
    if name == "adapters":
        from instructkit.train.continual.adapters import adapter_dir, carry_adapters

        carry_adapters(prev, folder, [t.spec.name for t in plan.tasks[:k]])
        dest = adapter_dir(folder, task.spec.name)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(result.model_dir, dest, copy_function=shutil.copy2)
    del result, token_loss, penalty

    model = folder / "train" / "model"
    write_text(
        json.dumps({"train": d_train, "model_digest": tree_digest(model)}) + "\n", folder / "trained.json"
    )


def _round_data(
    run: _Run, k: int, folder: Path, prev: Path | None
) -> tuple[Path, dict[str, Any], str | None]:
    """Write data/train.jsonl, rejects.jsonl, card.json (and buffer.jsonl for replay)."""
    plan, task = run.plan, run.plan.tasks[k]
    strategy = plan.strategy
    new = list(task.kept)
    records, asked, replayed, per_task, buffer_hash = new, 0, 0, {}, None
    if strategy.name == "replay":
        from instructkit.train.continual.replay import ReplayBuffer

        if prev is not None:
            buffer = ReplayBuffer.load(prev / "buffer.jsonl", per_task=strategy.per_task, seed=strategy.seed)
            asked = strategy.replay_count(len(new))
            replayed = min(asked, len(buffer))
            if replayed < asked:
                run.log(
                    f"[{round_name(k)}] replay: {asked} records asked for, the buffer holds {len(buffer)}"
                )
            per_task = buffer.shares(replayed)
            records = buffer.mix(new, replayed, k)
        else:
            buffer = strategy.buffer()
        buffer.add_task(task.spec.name, new)
        buffer.save(folder / "buffer.jsonl")
        buffer_hash = sha256_file(folder / "buffer.jsonl")
    data_dir = folder / "data"
    train_file = data_dir / "train.jsonl"
    write_records(records, train_file)
    rejects = [{"reason": why, "record": rec.to_dict()} for rec, why in task.rejected]
    write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects), data_dir / "rejects.jsonl")
    card = {
        "task": task.spec.name,
        "round": k,
        "source": {"path": str(task.train_path), "sha256": sha256_file(task.train_path)},
        "records_in": task.records_in,
        "held_out_for_test": task.held_out,
        "kept": len(new),
        "rejected": dict(Counter(why for _, why in task.rejected)),
        "replay_asked": asked,
        "replayed": replayed,
        "replayed_per_task": per_task,
        "train_records": len(records),
        "train_sha256": sha256_file(train_file),
        "rule": "records_in = kept + sum(rejected) + held_out_for_test; train_records = kept + replayed",
    }
    assert card["records_in"] == card["kept"] + sum(card["rejected"].values()) + card["held_out_for_test"]
    write_text(json.dumps(card, indent=2) + "\n", data_dir / "card.json")
    return train_file, card, buffer_hash


def _ewc_penalty(strategy: Any, prev: Path) -> Any:
    from instructkit.train.continual.ewc import EwcPenalty, EwcState

    return EwcPenalty(EwcState.load(prev / "ewc.safetensors"), strategy.lam)


def _consolidate_ewc(
    run: _Run, strategy: Any, task: TaskData, result: Any, prev: Path | None, folder: Path
) -> None:
    """The Fisher of the task just learned, at the trained weights, merged into the earlier tasks'."""
    from instructkit.train.continual.ewc import EwcState, consolidate, fisher_diagonal
    from instructkit.train.tasks import TASKS, LabelInfo

    cfg = round_train_config(run.plan.recipe, folder, folder / "data" / "train.jsonl")
    spec = TASKS[cfg.task]()
    feats, _ = spec.features(task.kept, result.tokenizer, LabelInfo(), cfg.data.max_length)
    collate = spec.collator(result.tokenizer)
    model = result.model
    device = next(model.parameters()).device

    def batches():
        for i in range(0, len(feats), 8):
            batch = collate(feats[i : i + 8])
            yield {k: v.to(device) for k, v in batch.items() if hasattr(v, "to")}

    fisher = fisher_diagonal(
        model, batches(), estimator=strategy.estimator, n_samples=strategy.n_samples, seed=strategy.seed
    )
    state = EwcState.load(prev / "ewc.safetensors") if prev is not None else None
    consolidate(state, fisher, model, strategy.gamma).save(folder / "ewc.safetensors")


def _lwf_loss(run: _Run, strategy: Any, prev: Path | None) -> Any:
    """LwF's token loss with the previous round's model as the teacher (round 0: the untouched model)."""
    from instructkit.train.continual.lwf import LwfTokenLoss, frozen_teacher
    from instructkit.train.saved_model import load_base, load_trained
    from instructkit.train.tasks import TASKS, LabelInfo

    if prev is not None:
        teacher = load_trained(prev / "train" / "model")[0]
    else:
        recipe = run.plan.recipe
        teacher = load_base(recipe.model, TASKS[recipe.task](), LabelInfo(), recipe.seed)
    return LwfTokenLoss(frozen_teacher(teacher), alpha=strategy.alpha, temperature=strategy.temperature)


def _score_round(run: _Run, k: int, folder: Path) -> None:
    """Scores after round k: tasks 0..k+1 and the general set (adapters: per the route)."""
    from instructkit.evaluate.scoring import load_for_eval

    plan = run.plan
    scored = plan.tasks[: k + 2]
    doc: dict[str, Any] = {"round": k, "label": round_name(k), "trained_task": plan.tasks[k].spec.name}
    if plan.strategy.name == "adapters":
        doc.update(_score_adapters(run, k, folder, scored))
    else:
        lm = load_for_eval(str(folder / "train"))
        doc["model"] = str(folder / "train" / "model")
        doc["scores"] = {t.spec.name: _score_task(run, lm, t, folder) for t in scored}
        doc["general"] = _score_general(run, lm, folder)
    _write_scores(folder, doc)


def _score_adapters(run: _Run, k: int, folder: Path, scored: list[TaskData]) -> dict[str, Any]:
    """Each test prompt answered by the adapter its route picks: the task's own by name (the base model for
    a task with no adapter yet), or the classifier's choice among the trained tasks."""
    from instructkit.evaluate.scoring import load_for_eval
    from instructkit.train.continual.adapters import PromptRouter, adapter_dir, route_by_name

    plan, strategy = run.plan, run.plan.strategy
    trained = [t.spec.name for t in plan.tasks[: k + 1]]
    adapters = {name: adapter_dir(folder, name) for name in trained}
    jobs: dict[str, list[tuple[str, int]]] = {}  # model key -> [(task or "general", index)]
    routing: dict[str, Any] = {"route": strategy.route}
    router = None
    if strategy.route == "classifier":
        router = PromptRouter(strategy.n_features).fit(
            {t.spec.name: [r.prompt_text() for r in t.kept] for t in plan.tasks[: k + 1]}
        )
        tests = {t.spec.name: [r.prompt_text() for r in t.test] for t in scored}
        routing["accuracy"] = router.accuracy(tests)
        routing["tasks"] = router.tasks
    sets: dict[str, tuple[TaskData | None, list[Record]]] = {t.spec.name: (t, t.test) for t in scored}
    if plan.general is not None:
        sets["__general__"] = (None, plan.general)
    for key, (t, records) in sets.items():
        if router is not None:
            chosen = router.route([r.prompt_text() for r in records])
        else:
            own = route_by_name(adapters, key) if t is not None else None
            chosen = [own.name if own else "__base__"] * len(records)
        for i, c in enumerate(chosen):
            jobs.setdefault(c, []).append((key, i))
    replies: dict[str, dict[int, str]] = {key: {} for key in sets}
    for model_key, items in sorted(jobs.items()):
        lm = load_for_eval(str(adapters[model_key]) if model_key in adapters else plan.recipe.model,
                           task=plan.recipe.task)  # fmt: skip
        for key in sets:
            idx = [i for kk, i in items if kk == key]
            if not idx:
                continue
            t, records = sets[key]
            convs, _ = scoring.prompts_and_refs([records[i] for i in idx])
            tokens = t.spec.new_tokens if t is not None else scoring_new_tokens("rouge")
            for i, reply in zip(idx, scoring.replies(lm, convs, tokens, run.progress), strict=True):
                replies[key][i] = reply
    out: dict[str, Any] = {"scores": {}, "general": None, "routing": routing}
    for key, (t, records) in sets.items():
        convs, refs = scoring.prompts_and_refs(records)
        preds = [replies[key][i] for i in range(len(records))]
        if t is None:
            _write_predictions(folder / "predictions" / "general.jsonl", records, convs, refs, preds)
            out["general"] = scoring.score("rouge", preds, refs, None)
        else:
            _write_predictions(folder / "predictions" / f"{key}.jsonl", records, convs, refs, preds)
            out["scores"][key] = scoring.score(t.spec.metric, preds, refs, t.spec.labels)
    return out


# ------------------------------------------------------------------------------------------------ matrix
def collect_matrix(run_dir: Path, tasks: list[str], has_general: bool) -> Any:
    """R from the round folders' scores.json (a cell not scored is None)."""
    from instructkit.train.continual.metrics import ScoreMatrix

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
