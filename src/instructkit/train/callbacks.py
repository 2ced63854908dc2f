"""Trainer callbacks: a rich progress bar with loss and tokens/s, and ``metrics.jsonl``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class MetricsFileCallback(TrainerCallback):
    """Append every log (loss, lr, eval metrics) to ``metrics.jsonl``; on resume, entries past the
    checkpoint's step are dropped first so the file tells one consistent story."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def on_train_begin(self, args, state, control, **kw: Any) -> None:
        if not self.enabled or not self.path.exists():
            return
        keep = [
            line
            for line in self.path.read_text().splitlines()
            if line and json.loads(line).get("step", 0) <= state.global_step
        ]
        self.path.write_text("".join(line + "\n" for line in keep))

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not self.enabled or not logs:
            return
        entry = {"step": state.global_step, "epoch": round(state.epoch or 0, 4), **logs}
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, default=float) + "\n")


class RichProgressCallback(TrainerCallback):
    """One progress bar for the run: step, loss, tokens/s."""

    def __init__(self) -> None:
        self.progress = None
        self.task = None
        self.loss = float("nan")
        self.t0 = 0.0
        self.tokens0 = 0

    def on_train_begin(self, args, state, control, **kw: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:,.0f} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, loss=float("nan"), tps=0.0
        )
        self.t0 = time.perf_counter()
        self.tokens0 = int(state.num_input_tokens_seen or 0)

    def on_step_end(self, args, state, control, **kw: Any) -> None:
        if self.progress is None:
            return
        dt = max(time.perf_counter() - self.t0, 1e-9)
        tps = (int(state.num_input_tokens_seen or 0) - self.tokens0) / dt
        self.progress.update(self.task, completed=state.global_step, loss=self.loss, tps=tps)

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])
        if self.progress is not None and logs and any(k.startswith("eval_") for k in logs):
            shown = {
                k.removeprefix("eval_"): round(v, 4)
                for k, v in logs.items()
                if isinstance(v, float) and "runtime" not in k and "per_second" not in k
            }
            self.progress.console.print(f"step {state.global_step}: eval {shown}")

    def on_train_end(self, args, state, control, **kw: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
