"""replay: mix a sample of earlier tasks' records into each new round.

The buffer keeps, per finished task, a uniform sample of its records drawn with reservoir sampling
(Vitter, "Random Sampling with a Reservoir", ACM TOMS 1985, Algorithm R): a task's records stream past
once and each ends up kept with probability capacity/n, whatever n is, without holding the task in memory.
Each round mixes in ``ratio`` × (the new round's size) records, or a fixed ``size``, split evenly across
the earlier tasks (so a large early task does not crowd out a small later one). Everything is seeded:
the same records, seed and order give the same buffer and the same mix.

Written by hand rather than with a library because the sampling is 10 lines and its seeding and per-task
split are what the round folders must reproduce; ``random.Random`` seeded with a string is stable across
Python runs (it hashes with SHA-512, not the salted ``hash``).

The buffer saves as instructkit JSONL (``write_records``), so a round folder can store it: each record
carries ``meta.replay = {"task": name, "seen": n, "source": s}`` (n: records of that task streamed past the
reservoir; s: the record's own ``meta.source`` or null, since reading a file sets ``meta.source`` to that
file's name where it is absent, and a reloaded buffer should hold the records it saved, unchanged).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from instructkit.config import checked
from instructkit.continual.strategies.base import ContinualError, RoundRecords, Strategy, register
from instructkit.files import sha256_file
from instructkit.formats import read_records, write_records
from instructkit.records import Record

if TYPE_CHECKING:
    from instructkit.continual.plan import Round

META_KEY = "replay"
BUFFER_FILE = "buffer.jsonl"


@register
@dataclass
class Replay(Strategy):
    name = "replay"
    ratio: float | None = checked(None, gt=0, finite=True)
    """Records replayed per round as a share of the new round's size (0.1: 100 old records per 1,000 new).
    Set this or ``size``."""
    size: int | None = checked(None, ge=1)
    """A fixed number of records replayed per round instead of ``ratio``."""
    per_task: int = checked(1000, ge=1)
    """Records the buffer keeps per finished task (each task's reservoir capacity)."""
    seed: int = 0
    """Seeds the reservoirs and each round's draw."""

    def validate(self) -> None:
        if (self.ratio is None) == (self.size is None):
            raise ContinualError("{key}: set exactly one of ratio and size", key="ratio")

    def buffer(self) -> ReplayBuffer:
        return ReplayBuffer(per_task=self.per_task, seed=self.seed)

    def replay_count(self, new_size: int) -> int:
        """How many old records a round of ``new_size`` new ones mixes in (ratio rounds up: a ratio > 0
        never replays nothing)."""
        if self.size is not None:
            return self.size
        assert self.ratio is not None
        return math.ceil(self.ratio * new_size)

    def round_records(self, rnd: Round, new: list[Record]) -> RoundRecords:
        """The new records mixed with a draw from the previous round's buffer; this task then joins the
        buffer, saved as ``buffer.jsonl`` for the next round."""
        out = RoundRecords(list(new))
        if rnd.prev is not None:
            buffer = ReplayBuffer.load(rnd.prev / BUFFER_FILE, per_task=self.per_task, seed=self.seed)
            out.asked = self.replay_count(len(new))
            out.replayed = min(out.asked, len(buffer))
            if out.replayed < out.asked:
                rnd.log(f"[{rnd.name}] replay: {out.asked} records asked for, the buffer holds {len(buffer)}")
            out.per_task = buffer.shares(out.replayed)
            out.records = buffer.mix(list(new), out.replayed, rnd.k)
        else:
            buffer = self.buffer()
        buffer.add_task(rnd.task.spec.name, new)
        buffer.save(rnd.folder / BUFFER_FILE)
        return out

    def outputs(self, folder: Path, task: str) -> list[Path]:
        return [folder / BUFFER_FILE]

    def lineage(self, rnd: Round) -> dict[str, Any]:
        path = rnd.folder / BUFFER_FILE
        return {"buffer": str(path), "buffer_sha256": sha256_file(path)}


def reservoir_sample(items: Iterable[Record], k: int, rng: random.Random) -> tuple[list[Record], int]:
    """Vitter's Algorithm R: a uniform sample of ``k`` items from a stream of unknown length, and the
    stream's length. The first k fill the reservoir; item t (0-based, t ≥ k) replaces a random slot with
    probability k/(t+1)."""
    reservoir: list[Record] = []
    seen = 0
    for item in items:
        if seen < k:
            reservoir.append(item)
        else:
            slot = rng.randrange(seen + 1)
            if slot < k:
                reservoir[slot] = item
        seen += 1
    return reservoir, seen


def _tagged(rec: Record, task: str, seen: int) -> Record:
    tag = {"task": task, "seen": seen, "source": rec.meta.get("source")}
    return dataclasses.replace(rec, meta={**rec.meta, META_KEY: tag})


def _untagged(rec: Record) -> Record:
    return dataclasses.replace(rec, meta={k: v for k, v in rec.meta.items() if k != META_KEY})


def _restored(rec: Record, tag: dict) -> Record:
    """A saved record as it was before saving: without its tag, with its own ``meta.source`` (or none)."""
    meta = {k: v for k, v in rec.meta.items() if k not in (META_KEY, "source")}
    if tag.get("source") is not None:
        meta["source"] = tag["source"]
    return dataclasses.replace(rec, meta=meta)


class ReplayBuffer:
    """Per-task reservoirs of finished tasks, in the order the tasks were added."""

    def __init__(self, per_task: int = 1000, seed: int = 0):
        if per_task < 1:
            raise ContinualError(f"replay buffer: per_task must be ≥ 1, got {per_task}")
        self.per_task = per_task
        self.seed = seed
        self.kept: dict[str, list[Record]] = {}
        self.seen: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.kept.values())

    @property
    def tasks(self) -> list[str]:
        return list(self.kept)

    def add_task(self, task: str, records: Iterable[Record]) -> None:
        """Stream a finished task's records through its own reservoir (seeded by seed and task name)."""
        if task in self.kept:
            raise ContinualError(f"replay buffer: task {task!r} is already in the buffer")
        kept, seen = reservoir_sample(records, self.per_task, random.Random(f"{self.seed}:reservoir:{task}"))
        if seen == 0:
            raise ContinualError(f"replay buffer: task {task!r} has no records")
        self.kept[task] = kept
        self.seen[task] = seen

    def shares(self, n: int) -> dict[str, int]:
        """How many of ``n`` records each task gives: n // tasks each, the remainder one more to the earliest
        tasks; a task holding fewer than its share gives all it has and the rest goes to the others evenly.
        More than the buffer holds is an error (lower ratio/size or raise per_task)."""
        if not self.kept:
            raise ContinualError("replay buffer: empty (no finished task yet)")
        if n > len(self):
            raise ContinualError(
                f"replay buffer: {n} records asked for, {len(self)} held "
                f"({', '.join(f'{t}: {len(v)}' for t, v in self.kept.items())}); "
                "lower ratio or size, or raise per_task"
            )
        share = dict.fromkeys(self.kept, 0)
        left = n
        open_tasks = [t for t in self.kept if len(self.kept[t]) > 0]
        while left > 0:
            base, extra = divmod(left, len(open_tasks))
            for i, t in enumerate(open_tasks):
                share[t] += base + (1 if i < extra else 0)
            left = 0
            for t in open_tasks:
                over = share[t] - len(self.kept[t])
                if over > 0:
                    share[t] -= over
                    left += over
            open_tasks = [t for t in open_tasks if share[t] < len(self.kept[t])]
        return share

    def draw(self, n: int, round_index: int) -> list[Record]:
        """``n`` records balanced across tasks (:meth:`shares`), drawn without replacement from each
        reservoir with an RNG seeded by seed and round, returned without their buffer tag."""
        out: list[Record] = []
        for task, k in self.shares(n).items():
            rng = random.Random(f"{self.seed}:draw:{round_index}:{task}")
            out.extend(_untagged(r) for r in rng.sample(self.kept[task], k))
        return out

    def mix(self, new: list[Record], count: int, round_index: int) -> list[Record]:
        """The round's training records: the new ones and ``count`` replayed ones, shuffled together."""
        mixed = list(new) + self.draw(count, round_index) if count else list(new)
        random.Random(f"{self.seed}:mix:{round_index}").shuffle(mixed)
        return mixed

    # ------------------------------------------------------------------ save / load
    def records(self) -> list[Record]:
        return [_tagged(r, t, self.seen[t]) for t, kept in self.kept.items() for r in kept]

    def save(self, path: str | Path) -> None:
        """Write the buffer as instructkit JSONL, atomically (``write_records``)."""
        write_records(self.records(), path, fmt="instructkit")

    @classmethod
    def load(cls, path: str | Path, per_task: int = 1000, seed: int = 0) -> ReplayBuffer:
        """A buffer saved by :meth:`save`; a record without its ``meta.replay`` tag, or a task holding more
        records than ``per_task``, is an error naming the file and record."""
        buf = cls(per_task=per_task, seed=seed)
        for i, rec in enumerate(read_records(path, fmt="instructkit")):
            tag = rec.meta.get(META_KEY)
            if not (
                isinstance(tag, dict)
                and isinstance(tag.get("task"), str)
                and isinstance(tag.get("seen"), int)
            ):
                raise ContinualError(
                    f"{path}: record {i + 1}: meta.{META_KEY} must be {{task: str, seen: int}}"
                )
            task = tag["task"]
            if task in buf.seen and buf.seen[task] != tag["seen"]:
                raise ContinualError(
                    f"{path}: record {i + 1}: meta.{META_KEY}.seen disagrees within task {task!r}"
                )
            buf.kept.setdefault(task, []).append(_restored(rec, tag))
            buf.seen[task] = tag["seen"]
            if len(buf.kept[task]) > per_task:
                raise ContinualError(f"{path}: task {task!r} holds more than per_task={per_task} records")
        return buf
