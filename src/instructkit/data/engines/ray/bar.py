"""The Ray engine's progress: a live bar per hand-written stage, and a line per stage with the driver's
memory."""

from __future__ import annotations

import time
from typing import Any


def driver_memory() -> str:
    """This process's private memory (Linux), for the stage lines: what the driver itself holds."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            kb = sum(
                int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty"))
            )
    except OSError:
        return ""
    return f"; driver {kb / 1024:.0f} MiB private"


class StageBar:
    """A live bar for one stage on a terminal (rich, as the rest of the project's bars): the stage's Ray
    tasks done out of those submitted so far, and records/s across the cluster, estimated as the stage's
    input records times the share of its tasks done, over the time since the stage began.

    Hand-written because these stages are plain Ray tasks, which have no bar of their own (Ray Data's
    operators do, and show them). A thread polls ``ray.wait`` (no fetch) four times a second, so the
    driver's own waits need not know about the bar. Off a terminal, and with INSTRUCTKIT_QUIET=1, there
    is no bar and no thread: only the one line per stage."""

    def __init__(self, ray: Any, name: str, n_in: int) -> None:
        import threading

        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.ray, self.n_in = ray, n_in
        self.refs: dict[Any, None] = {}  # insertion-ordered set: ray.wait refuses repeated refs
        self.lock = threading.Lock()
        self.t0 = time.perf_counter()
        self.bar = Progress(
            TextColumn(f"[bold]{name}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} tasks"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.bar.add_task(name, total=0, rate="")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.bar.start()
        self.thread.start()

    def add(self, refs: list[Any]) -> None:
        with self.lock:
            for r in refs:
                self.refs[r[0] if isinstance(r, list) else r] = None

    def poll(self) -> None:
        while not self.stop.wait(0.25):
            with self.lock:
                refs = list(self.refs)
            if not refs:
                continue
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
            rate = ""
            if self.n_in:
                records = self.n_in * len(ready) / len(refs)
                rate = f"~{records / max(time.perf_counter() - self.t0, 1e-9):,.0f} records/s"
            self.bar.update(self.task, total=len(refs), completed=len(ready), rate=rate)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.bar.stop()
