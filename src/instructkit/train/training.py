"""``instructkit train CONFIG.yaml``: a pretrained model + data + a method → a self-describing run folder.

HF ``Trainer`` does the loop (optimizer, schedule, accumulation, checkpoints with optimizer/scheduler/RNG
state, resume with data-order skipping, early stopping, distributed data parallel under
``accelerate launch``/``torchrun``). instructkit adds the parts it lacks: records → features per task,
the method registry, a run folder with ``config.yaml``, ``metrics.jsonl``, TensorBoard logs, a loss
plot, and a saved model that carries its tokenizer, chat template, task, labels and method.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from instructkit.files import write_text
from instructkit.formats import RecordReader
from instructkit.records import Record
from instructkit.train.config import ConfigError, TrainConfig
from instructkit.train.saved_model import load_base, save_trained
from instructkit.train.tasks import TASKS, LabelInfo, Task, TaskDataError


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path
    metrics: dict[str, Any]
    model: Any
    tokenizer: Any


def _read(path: str, fmt: str | None) -> list[Record]:
    return list(RecordReader(path, fmt=fmt))


def split_train_val(records: list[Record], share: float, seed: int) -> tuple[list[Record], list[Record]]:
    """A seeded held-out share of the training records (the order of the rest is kept)."""
    if share <= 0:
        return records, []
    idx = list(range(len(records)))
    random.Random(seed).shuffle(idx)
    n_val = max(1, round(len(records) * share))
    val = set(idx[:n_val])
    return [r for i, r in enumerate(records) if i not in val], [r for i, r in enumerate(records) if i in val]


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[Any]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def bf16_enabled(setting: str) -> bool:
    """``auto``: on when the CPU has native bf16 (AVX512-BF16 / AMX) or a CUDA device supports it."""
    s = str(setting).lower()
    if s in ("true", "false"):
        return s == "true"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _is_main_process() -> bool:
    # Read from the launcher's environment: the process group does not exist yet when the run starts
    # (the Trainer creates it), and rank 0 alone must write the run folder.
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _apply_dropout(model: Any, p: float) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    for key in (
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "attention_dropout",
        "hidden_dropout",
        "dropout",
    ):
        if hasattr(model.config, key):
            setattr(model.config, key, p)


def _training_args(cfg: TrainConfig, task: Task, has_val: bool, ckpt_dir: Path) -> Any:
    from transformers import TrainingArguments

    o, e = cfg.optim, cfg.eval
    # Evaluation and saving share one schedule when there is validation data: restoring the best
    # checkpoint needs a checkpoint at every evaluation.
    every = e.every_steps or cfg.save_every_steps
    if has_val:
        eval_strategy = save_strategy = "steps" if every else "epoch"
        save_steps = (
            cfg.save_every_steps
            if cfg.save_every_steps and every and cfg.save_every_steps % every == 0
            else every
        )
    else:
        eval_strategy = "no"
        save_strategy = "steps" if cfg.save_every_steps else "epoch"
        save_steps = cfg.save_every_steps
    metric = e.metric or task.default_metric
    micro = o.micro_batch_size or (
        1 if cfg.packing_enabled() and not torch.cuda.is_available() else o.batch_size
    )
    return TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=o.batch_size * 2,
        gradient_accumulation_steps=o.grad_accum * (o.batch_size // micro),
        learning_rate=o.lr,
        lr_scheduler_type="constant_with_warmup" if o.schedule == "constant" else o.schedule,
        warmup_steps=o.warmup_ratio,  # a float below 1 is read as a share of all steps
        weight_decay=o.weight_decay,
        max_grad_norm=o.max_grad_norm,
        num_train_epochs=o.epochs,
        max_steps=o.max_steps,
        optim="sgd" if o.optimizer == "sgd" else "adamw_torch",
        seed=cfg.seed,
        data_seed=cfg.seed,
        eval_strategy=eval_strategy,
        eval_steps=every,
        save_strategy=save_strategy,
        save_steps=save_steps or 500,
        save_total_limit=None,  # rotated by ManifestCallback, once the new checkpoint is complete
        load_best_model_at_end=bool(has_val and e.load_best),
        metric_for_best_model=metric if has_val else None,
        greater_is_better=(metric != "loss" and task.greater_is_better) if has_val else None,
        logging_steps=cfg.logging_steps,
        report_to="none",
        bf16=bf16_enabled(cfg.bf16),
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length"
        if cfg.group_by_length and not cfg.packing_enabled()
        else "random",
        include_num_input_tokens_seen="non_padding",  # packed batches: see InstructTrainer
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        disable_tqdm=True,
    )


@dataclass
class _Run:
    """What the phases of :func:`train` share: the config, the method, who writes, what checkpoints record."""

    cfg: TrainConfig
    method: Any
    main: bool  # rank 0, the one process that writes the run folder
    inputs: dict[str, Any]  # the config and data hashes a checkpoint must match to be resumed
    log: Callable[[str], None]

    @property
    def ckpt_dir(self) -> Path:
        return self.cfg.run_dir / "checkpoints"


@dataclass
class _Features:
    """The run's data as the task turned it into features, with what the features were made with."""

    task: Task
    tokenizer: Any
    labels: LabelInfo
    chat_template: str | None
    train: list[Any]
    val: list[Any]
    dropped: Counter[str]  # samples left out, per reason
    val_dropped: Counter[str]


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    *,
    weights_only: bool | None = None,
    restart_if_changed: bool = False,
    log: Callable[[str], None] = print,
    loss_penalty: Callable[[Any], Any] | None = None,
    token_loss: Callable[..., Any] | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train as ``cfg`` says. ``resume``: continue from the newest intact checkpoint made with the same
    inputs (see ``train/checkpoints.py``); a changed config or data is an error naming the keys, unless
    ``restart_if_changed`` (``instructkit run``), which moves the old checkpoints aside and starts over.
    Without ``resume`` existing checkpoints are moved aside too: two runs never share a checkpoints
    folder. ``weights_only`` (default ``cfg.resume_weights_only``): resume from the weights and step
    alone, with a fresh optimizer, schedule and RNG. ``loss_penalty(model)`` is added to each training
    step's loss (``InstructTrainer``; EWC's penalty, ``continual/strategies/ewc.py``); ``token_loss`` replaces the
    per-token cross-entropy sum in training steps (LwF, ``continual/strategies/lwf.py``). ``init_from``: a
    trained model folder of the same method and base (an earlier run's ``model/``) whose trained weights
    are loaded after the method is applied, so this run continues that one's weights on new data (a
    continual round; not a resume: the optimizer and schedule start fresh)."""
    from transformers import set_seed

    cfg.validate()
    if weights_only is None:
        weights_only = cfg.resume_weights_only
    set_seed(cfg.seed)
    run = _open_run(cfg, log)
    last = _checkpoint_to_resume(run, resume, weights_only, restart_if_changed)
    if run.main:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), cfg.run_dir / "config.yaml")
    feats = _read_features(cfg)
    for what, kept, dropped in (
        ("training", feats.train, feats.dropped),
        ("validation", feats.val, feats.val_dropped),
    ):
        # said now, not only in the final metrics: a too-small max_length can drop most of the data
        if dropped and run.main:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(dropped.items()))
            hint = " (raise data.max_length)" if any("max_length" in r for r in dropped) else ""
            total = len(kept) + sum(dropped.values())
            log(f"[train] left out {sum(dropped.values())} of {total} {what} samples: {reasons}{hint}")
    model = _build_model(run, feats, init_from)
    summary = run.method.trainable_summary(model)
    trainer = _build_trainer(run, feats, model, weights_only, progress, loss_penalty, token_loss)
    metrics = _fit(trainer, last)
    metrics.update(_held_out_metrics(trainer, run, feats))
    metrics.update(
        {
            "trainable_params": summary["trainable"],
            "total_params": summary["total"],
            "dropped": dict(feats.dropped),
            "val_dropped": dict(feats.val_dropped),
        }
    )
    model_dir = cfg.run_dir / "model"
    if run.main:
        _save_run(run, feats, model, metrics, model_dir)
    return TrainResult(cfg.run_dir, model_dir, metrics, model, feats.tokenizer)


def _open_run(cfg: TrainConfig, log: Callable[[str], None]) -> _Run:
    """Check the run folder, build the method (its canonical name is what reloads) and hash the inputs."""
    from instructkit.train.checkpoints import run_inputs
    from instructkit.train.methods import build_method
    from instructkit.train.rundir import TRAIN_MARKERS, check_run_folder

    main = _is_main_process()
    # only the process that writes the run folder checks it: another rank that gets here after rank 0 has
    # begun writing would see a folder with files and no config.yaml yet (seen under load in the DDP test)
    problem = check_run_folder(cfg.run_dir, TRAIN_MARKERS) if main else None
    if problem:
        raise ConfigError(f"output_dir/name: {problem}")
    method_params = {k: v for k, v in cfg.method.items() if k != "name"}
    method = build_method(cfg.method["name"], method_params)
    cfg.method = {"name": method.name, **method_params}
    return _Run(cfg, method, main, run_inputs(cfg.to_dict()), log)


def _checkpoint_to_resume(
    run: _Run, resume: bool, weights_only: bool, restart_if_changed: bool
) -> Path | None:
    """The checkpoint to continue from, or None; checkpoints that will not be resumed are moved aside."""
    from instructkit.train.checkpoints import CheckpointError, move_aside, select_for_resume

    log, main, ckpt_dir = run.log, run.main, run.ckpt_dir
    if not resume:
        if main:
            move_aside(ckpt_dir, log, "a new run (not --resume)")
        return None
    last = None
    try:
        last = select_for_resume(ckpt_dir, run.inputs, weights_only, log if main else _quiet, move=main)
    except CheckpointError as e:
        if not restart_if_changed:
            raise
        if main:
            why = (
                f"the checkpoints were made with other inputs (changed: {', '.join(e.changes)})"
                if e.changes
                else f"no intact checkpoint ({'; '.join(str(e).splitlines()[1:-1]).strip()})"
            )
            move_aside(ckpt_dir, log, why)
    if last is not None:
        log(f"[train] resuming from {last}" + (" (weights only)" if weights_only else ""))
    elif main and not restart_if_changed:
        log(f"[train] no checkpoint in {ckpt_dir} to resume; training from step 0")
    return last


def _read_features(cfg: TrainConfig) -> _Features:
    """Read the train and validation records (a seeded share of train when no val file) into features."""
    from instructkit.models import load_tokenizer

    task = TASKS[cfg.task]()
    tokenizer = load_tokenizer(cfg.model)
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    train_records = _read(cfg.data.train, cfg.data.format)
    if cfg.data.val:
        val_records = _read(cfg.data.val, cfg.data.format)
    else:
        train_records, val_records = split_train_val(train_records, cfg.data.val_share, cfg.seed)
    labels = task.labels(train_records)
    chat_template = Path(cfg.data.chat_template).read_text() if cfg.data.chat_template else None
    kw = {"chat_template": chat_template}
    train_feats, dropped = task.features(train_records, tokenizer, labels, cfg.data.max_length, **kw)
    val_feats, val_dropped = (
        task.features(val_records, tokenizer, labels, cfg.data.max_length, **kw)
        if val_records
        else ([], Counter())
    )
    if not train_feats:
        hint = "; raise data.max_length" if any("max_length" in r for r in dropped) else ""
        raise TaskDataError(f"no training samples left ({dict(dropped)}){hint}")
    return _Features(task, tokenizer, labels, chat_template, train_feats, val_feats, dropped, val_dropped)


def _build_model(run: _Run, feats: _Features, init_from: str | Path | None = None) -> Any:
    """The base model with the task's head, the configured dropout and the method applied (then the
    trained weights of ``init_from``, when given)."""
    cfg = run.cfg
    model = load_base(cfg.model, feats.task, feats.labels, cfg.seed)
    if cfg.optim.dropout is not None:
        _apply_dropout(model, cfg.optim.dropout)
    model = run.method.apply(model, cfg.task)
    if init_from is not None:
        _load_init(model, run, Path(init_from))
    return model


def _load_init(model: Any, run: _Run, folder: Path) -> None:
    """Load ``folder``'s trained weights (``instructkit train``'s ``model/``) into ``model``; the folder must
    have been trained with the same method and base model, else a ConfigError naming both."""
    from instructkit.train.methods.base import METHOD_FILE, load_weights
    from instructkit.train.saved_model import INFO_FILE

    if (folder / "model" / INFO_FILE).exists():
        folder = folder / "model"
    try:
        info = json.loads((folder / INFO_FILE).read_text())
        saved_method = json.loads((folder / METHOD_FILE).read_text())["method"]
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"init_from: {folder} is not a trained model folder ({e})") from None
    if saved_method != run.method.name or info.get("base_model") != run.cfg.model:
        raise ConfigError(
            f"init_from: {folder} was trained with {saved_method} on {info.get('base_model')}, "
            f"this run uses {run.method.name} on {run.cfg.model}"
        )
    load_weights(model, folder)


def _train_data(run: _Run, feats: _Features) -> tuple[Any, Callable[[list[Any]], dict[str, Any]]]:
    """The training dataset and collator: the task's own, or packed rows when packing is on."""
    from instructkit.train.trainer import TOKENS_KEY

    cfg, task, method = run.cfg, feats.task, run.method
    collator = task.collator(feats.tokenizer)
    if not cfg.packing_enabled():
        return ListDataset(feats.train), collator
    if not task.packing:
        packs = ", ".join(n for n, t in TASKS.items() if t.packing)
        raise ConfigError(f"packing applies to {packs} only, not {cfg.task}")
    if not method.packing:
        raise ConfigError(
            f"packing cannot combine with {method.name} (it loses the per-sample position ids of packed rows)"
        )
    from instructkit.models import pad_id
    from instructkit.train.packing import PackedCollator, pack_samples

    train_feats, tokenizer = feats.train, feats.tokenizer
    bins = pack_samples(train_feats, cfg.data.max_length)
    train_ds = ListDataset([[train_feats[i] for i in b] for b in bins])
    pad = pad_id(tokenizer)
    # sdpa needs the additive mask in the dtype of the queries (bf16 under autocast).
    mask_dtype = torch.bfloat16 if bf16_enabled(cfg.bf16) else torch.float32
    packed = PackedCollator(pad, cfg.data.max_length, dtype=mask_dtype)
    plain = collator

    def collate(batch: list[Any]) -> dict[str, Any]:  # eval batches stay unpacked
        if not (batch and isinstance(batch[0], list)):
            return plain(batch)
        n_tokens = sum(min(sum(len(s["input_ids"]) for s in b), cfg.data.max_length) for b in batch)
        return {**packed(batch), TOKENS_KEY: n_tokens}

    return train_ds, collate


def _callbacks(run: _Run, has_val: bool, progress: bool) -> list[Any]:
    """Checkpoint manifests, metrics.jsonl, TensorBoard and the progress bar (rank 0), early stopping."""
    from transformers import EarlyStoppingCallback
    from transformers.integrations import TensorBoardCallback

    from instructkit.train.callbacks import MetricsFileCallback, RichProgressCallback
    from instructkit.train.checkpoints import ManifestCallback

    cfg, main = run.cfg, run.main
    callbacks: list[Any] = [
        ManifestCallback(run.inputs, cfg.save_total_limit),
        MetricsFileCallback(cfg.run_dir / "metrics.jsonl", enabled=main),
    ]
    if main:
        from torch.utils.tensorboard import SummaryWriter

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(cfg.run_dir / "logs"))))
    if progress and main:
        callbacks.append(RichProgressCallback())
    if has_val and cfg.eval.patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.eval.patience))
    return callbacks


def _build_trainer(
    run: _Run,
    feats: _Features,
    model: Any,
    weights_only: bool,
    progress: bool,
    loss_penalty: Callable[[Any], Any] | None = None,
    token_loss: Callable[..., Any] | None = None,
) -> Any:
    from instructkit.train.trainer import InstructTrainer

    cfg, task, method = run.cfg, feats.task, run.method
    train_ds, collator = _train_data(run, feats)
    args = _training_args(cfg, task, bool(feats.val), run.ckpt_dir)
    callbacks = _callbacks(run, bool(feats.val), progress)
    head_only = cfg.trained_positions_head and task.trained_positions_head and method.trained_positions_head
    trainer = InstructTrainer(
        model=model,
        trained_positions_head=head_only,
        weights_only_resume=weights_only,
        loss_penalty=loss_penalty,
        token_loss=token_loss,
        args=args,
        train_dataset=train_ds,
        eval_dataset=ListDataset(feats.val) if feats.val else None,
        data_collator=collator,
        compute_metrics=task.compute_metrics(feats.labels) if feats.val else None,
        callbacks=callbacks,
    )
    if progress and run.main:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # the rich bar shows loss; raw dicts are noise
    return trainer


def _fit(trainer: Any, last: Path | None) -> dict[str, Any]:
    """Train (from ``last`` when resuming); the loss, the time, the steps and the tokens seen."""
    start = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=str(last) if last else None)
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {
        "train_loss": out.training_loss,
        "train_seconds": round(seconds, 2),
        "steps": trainer.state.global_step,
    }
    metrics["tokens_seen"] = int(trainer.state.num_input_tokens_seen or 0)
    return metrics


def _held_out_metrics(trainer: Any, run: _Run, feats: _Features) -> dict[str, Any]:
    """The trained model on the validation features (``val_*``) and the test file (``test_*``)."""
    cfg = run.cfg
    metrics: dict[str, Any] = {}
    if feats.val:
        metrics.update({f"val_{k.removeprefix('eval_')}": v for k, v in trainer.evaluate().items()})
    if cfg.data.test:
        test_records = _read(cfg.data.test, cfg.data.format)
        kw = {"chat_template": feats.chat_template}
        test_feats, _ = feats.task.features(
            test_records, feats.tokenizer, feats.labels, cfg.data.max_length, **kw
        )
        metrics.update(
            {
                f"test_{k.removeprefix('test_')}": v
                for k, v in trainer.predict(ListDataset(test_feats)).metrics.items()
            }
        )
    return metrics


def _save_run(run: _Run, feats: _Features, model: Any, metrics: dict[str, Any], model_dir: Path) -> None:
    """The model folder, ``train_metrics.json`` and the loss plot (rank 0 only)."""
    from instructkit.train.plots import plot_loss

    run_dir = run.cfg.run_dir
    save_trained(model, feats.tokenizer, run.method, run.cfg, feats.labels, model_dir, feats.chat_template)
    write_text(json.dumps(metrics, indent=2, default=float) + "\n", run_dir / "train_metrics.json")
    plot_loss(run_dir / "metrics.jsonl", run_dir / "plots" / "loss.png")


def _quiet(message: str) -> None:
    """The log of processes other than rank 0: one copy of each message is enough."""
