"""Trainer callbacks: a rich progress bar with loss and tokens/s, and ``metrics.jsonl``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

PLAIN_EVERY_S = 30.0
"""Seconds between the plain progress lines training prints when its output is not a terminal."""


class MetricsFileCallback(TrainerCallback):
    """Append every log (loss, lr, eval metrics) to ``metrics.jsonl``, each with the run's ``max_steps`` (so
    a reader of the file alone, the studio's progress, knows the total); on resume, entries past the
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
        entry = {"step": state.global_step, "epoch": round(state.epoch or 0, 4), "max_steps": state.max_steps,
                 **logs}  # fmt: skip
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, default=float) + "\n")


class RichProgressCallback(TrainerCallback):
    """One progress bar for the run: step, loss, tokens/s; where output is not a terminal (a log file), a
    plain line every ``PLAIN_EVERY_S`` seconds instead."""

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
            TextColumn("loss {task.fields[loss]}  {task.fields[tps]:,.0f} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, loss=self._loss_text(), tps=0.0
        )
        self.t0 = self.last_line = time.perf_counter()
        self.tokens0 = int(state.num_input_tokens_seen or 0)
        self.step0 = state.global_step

    def on_step_end(self, args, state, control, **kw: Any) -> None:
        if self.progress is None:
            return
        dt = max(time.perf_counter() - self.t0, 1e-9)
        tps = (int(state.num_input_tokens_seen or 0) - self.tokens0) / dt
        self.progress.update(self.task, completed=state.global_step, loss=self._loss_text(), tps=tps)
        now = time.perf_counter()
        if not self.progress.console.is_terminal and now - self.last_line >= PLAIN_EVERY_S:
            # a log file or a pipe shows no live bar: a plain line now and then says the run is alive
            self.last_line = now
            left = (state.max_steps - state.global_step) * dt / max(state.global_step - self.step0, 1)
            self.progress.console.print(
                f"training step {state.global_step}/{state.max_steps}, loss {self._loss_text()}, "
                f"{tps:,.0f} tok/s, about {left / 60:.0f} min left",
                highlight=False,
            )

    def _loss_text(self) -> str:
        """The last logged training loss, or a dash before the first log (not "nan")."""
        return "–" if self.loss != self.loss else f"{self.loss:.4f}"

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
