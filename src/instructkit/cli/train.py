"""``instructkit train CONFIG.yaml``: fine-tune a model as the config says; flags override any field."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from instructkit.cli.common import console, user_errors


def train(
    config: Path = typer.Argument(
        ..., help="Training YAML (see recipes/train/).", exists=True, dir_okay=False
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        "-s",
        help="Override a field: --set optim.lr=1e-4 --set method.r=16 (repeatable; values are YAML).",
    ),
    name: str | None = typer.Option(None, "--name", help="Run name (folder under output_dir)."),
    output_dir: str | None = typer.Option(None, "--output-dir", help="Folder that holds run folders."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from the run's newest intact checkpoint (optimizer, scheduler, RNG, data order); "
        "refused when the config or data changed since it was made.",
    ),
    resume_weights_only: bool = typer.Option(
        False,
        "--resume-weights-only",
        help="Resume from the checkpoint's weights and step alone, with a fresh optimizer, schedule and "
        "RNG (when optimizer.pt/scheduler.pt/rng_state.pth are lost); not an exact continuation.",
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
) -> None:
    """Fine-tune a model: full, freeze, LoRA, adapters, prompt tuning, BitFit or LN-tuning; writes a run folder."""
    from instructkit.config import parse_overrides
    from instructkit.models import ModelNotFoundError
    from instructkit.models.registry import check_model
    from instructkit.records import RecordError
    from instructkit.train.checkpoints import CheckpointError
    from instructkit.train.config import ConfigError, TrainConfig
    from instructkit.train.methods import MethodError
    from instructkit.train.tasks import TaskDataError
    from instructkit.train.training import train as run_train

    for item in set_:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
    with user_errors(
        ConfigError,
        CheckpointError,
        MethodError,
        TaskDataError,
        RecordError,
        ModelNotFoundError,
        FileNotFoundError,
    ):
        overrides = parse_overrides(set_)  # values are YAML; the flags below are taken as they are
        for key, value in (("name", name), ("output_dir", output_dir), ("optim.max_steps", max_steps)):
            if value is not None:
                overrides[key] = value
        if resume_weights_only:
            overrides["resume_weights_only"] = True
        cfg = TrainConfig.from_yaml(config, overrides, parse_strings=False)
        check_model(cfg.model)  # before anything is written: a hub id with no network fails in seconds
        result = run_train(
            cfg,
            resume=resume or resume_weights_only,
            log=lambda m: console.print(escape(m), highlight=False),
        )
    table = Table(title=f"run {cfg.name}", show_header=False)
    for key, value in result.metrics.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        table.add_row(key, escape(str(value)))
    console.print(table)
    console.print(f"run folder: {escape(str(result.run_dir))}\nmodel: {escape(str(result.model_dir))}")
