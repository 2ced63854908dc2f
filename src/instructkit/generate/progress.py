"""A generation run's progress on stderr: a live rich line on a terminal, else a plain line every
``every`` seconds (a log file, a pipe, a CI job would see nothing from a bar until the end) and one at the
end."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO

PROGRESS_EVERY = 15.0
"""Seconds between two plain progress lines when stderr is not a terminal."""


class Progress:
    """Progress on stderr (module docstring): a live rich line on a terminal — kept / target, rejected by
    reason (top 3), requests, tokens, cache hits —, else a plain line every ``every`` seconds and one at the
    end. Off when ``show`` is false (``--quiet``, tests and recipes that print their own)."""

    def __init__(
        self, run: Any, show: bool, every: float = PROGRESS_EVERY, stream: TextIO | None = None
    ) -> None:
        self.run = run
        self.bar = None
        self.task = None
        self.last = 0.0
        self.lines: TextIO | None = None  # the stream plain lines go to, when not a terminal
        self.every = every
        self.last_line = time.monotonic()
        if not show:
            return
        from rich.console import Console

        console = Console(stderr=True) if stream is None else Console(file=stream)
        if not console.is_terminal:
            self.lines = stream if stream is not None else sys.stderr
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task(run.generator, total=run.target, info="")

    def _rejected(self) -> str:
        run = self.run
        reasons = Counter(r["reason"] for r in run.rejects if r.get("counted", True)).most_common(3)
        return f"rejected {sum(1 for r in run.rejects if r.get('counted', True))}" + (
            f" ({', '.join(f'{k} {v}' for k, v in reasons)})" if reasons else ""
        )

    def update(self, force: bool = False) -> None:
        if self.lines is not None:
            now = time.monotonic()
            if force or now - self.last_line >= self.every:
                self.last_line = now
                self.line()
            return
        if self.bar is None or self.task is None:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        run = self.run
        stats = run.backend.stats
        info = (
            self._rejected()
            + f" · requests {stats.misses} sent, {stats.hits} cached · tokens {stats.tokens:,}"
        )
        self.bar.update(self.task, completed=run.kept, info=info)

    def line(self) -> None:
        """One plain progress line: ``[self-instruct] 45 s: kept 12/20 instructions, rejected 30 (...),
        requests 40 sent + 0 cached (2 errors), tokens 12,345 (274 tokens/s), 16 kept/min``."""
        if self.lines is None:
            return
        run = self.run
        stats = run.backend.stats
        elapsed = max(time.monotonic() - run.started, 1e-9)
        target = f"/{run.target}" if run.target else ""
        text = (
            f"[{run.generator}] {elapsed:.0f} s: kept {run.kept}{target} {run.unit}s, {self._rejected()}, "
            f"requests {stats.misses} sent + {stats.hits} cached ({stats.errors} errors), "
            f"tokens {stats.tokens:,} ({stats.tokens / elapsed:,.0f} tokens/s), "
            f"{run.kept / elapsed * 60:.1f} kept/min"
        )
        try:
            print(text, file=self.lines, flush=True)
        except (OSError, ValueError):  # a closed pipe or file: progress is not worth failing the run
            self.lines = None

    def close(self) -> None:
        if self.lines is not None:
            self.line()
            self.lines = None
        if self.bar is not None:
            self.update(force=True)
            self.bar.stop()
            self.bar = None
