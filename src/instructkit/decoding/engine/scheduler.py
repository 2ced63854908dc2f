"""The engine: a bounded waiting queue, admission into the lanes, and the loop that steps them on one thread.

One background thread owns the model. Callers :meth:`Engine.submit` from any thread (or coroutine): a
request waits in a bounded queue (``max_queue`` places besides the free slots; one more is refused with
:class:`~instructkit.decoding.engine.requests.QueueFull`, which the server answers 429) until one of the
``max_batch`` slots is free, then joins the running batch of its adapter's lane. Each turn of the loop admits what fits and makes one step
of one lane, the lanes in turn (the active adapter is a property of the model, not of a row, so lanes
cannot share a pass). A step that fails fails only the requests it held; the server goes on.

``paused()`` holds the loop between two steps (tests fill the queue under it; the reference ``generate``
of the tests runs under it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from instructkit.decoding.engine.requests import EngineStopped, QueueFull, Request, Result
from instructkit.decoding.engine.runner import ModelRunner
from instructkit.decoding.engine.sampling import Sampling

log = logging.getLogger("instructkit.serve")


class Engine(ModelRunner):
    """The batching loop. ``activate(lane)`` returns a context manager that makes the model run with that
    lane's adapter (``None``: the base model); a model without adapters needs none."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch: int = 8,
        max_queue: int = 64,
        activate: Callable[[str | None], AbstractContextManager] | None = None,
        prefix_cache_mb: float = 256,
        draft_tokens: int = 2,
        suffix_draft_tokens: int = 16,
        packed_weights: bool = True,
    ):
        if max_batch < 1 or max_queue < 0 or draft_tokens < 0 or suffix_draft_tokens < 0:
            raise ValueError("max_batch must be >= 1, max_queue, draft_tokens and suffix_draft_tokens >= 0")
        super().__init__(
            model,
            tokenizer,
            activate=activate,
            prefix_cache_mb=prefix_cache_mb,
            draft_tokens=draft_tokens,
            suffix_draft_tokens=suffix_draft_tokens,
            packed_weights=packed_weights,
        )
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._waiting: deque[Request] = deque()
        self._cond = threading.Condition()
        self._step_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Engine:
        if self._thread is None:
            self.model.eval()
            self._pack_weights()
            self._probe()
            self._thread = threading.Thread(target=self._run, name="instructkit-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._restore_attention()  # give the model back as it came

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the decoding loop between two steps (maintenance; tests use it to fill the queue)."""
        with self._step_lock:
            yield

    @property
    def active(self) -> int:  # read from other threads too
        return sum(len(lane.rows) + len(lane.pending) for lane in list(self._lanes.values()))

    @property
    def batching(self) -> str:
        """How requests share forward passes: ``packed`` (prompts prefilled inside decoding steps),
        ``separate-prefill`` (each prompt in a pass of its own, then batched) or ``one-at-a-time``."""
        if self._packed:
            return "packed"
        return "separate-prefill" if self._batchable and self.max_batch > 1 else "one-at-a-time"

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def waiting_cancelled(self) -> int:
        """Waiting requests whose client is gone (dropped when they reach the front of the queue)."""
        return sum(1 for r in list(self._waiting) if r.cancelled)

    def snapshot(self) -> list[dict[str, Any]]:
        """The requests being decoded now: id, lane, tokens so far, whether cancelled (tests, /health)."""
        return [
            {"id": r.id, "lane": r.lane, "generated": len(r.generated), "cancelled": r.cancelled}
            for lane in list(self._lanes.values())
            for r in list(lane.rows) + list(lane.pending)
        ]

    # ---------------------------------------------------------------- submitting
    def submit(
        self, prompt_ids: Sequence[int], sampling: Sampling, lane: str | None = None, *, deltas: bool = True
    ) -> Request:
        """Queue a request; raises QueueFull when ``max_queue`` requests already wait for a slot.
        ``deltas=False``: deliver only the final result (no text event per token)."""
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        req = Request(prompt_ids, sampling, lane, self.eos, deltas)
        with self._cond:
            if self._stopping or self._thread is None:
                raise EngineStopped("the generation engine is not running")
            free = self.max_batch - self.active
            if len(self._waiting) >= self.max_queue + max(free, 0):
                raise QueueFull(len(self._waiting))
            self._waiting.append(req)
            self.stats["requests"] += 1
            self._cond.notify_all()
        return req

    def generate(self, prompt_ids: Sequence[int], sampling: Sampling, lane: str | None = None) -> Result:
        """Blocking convenience: submit and wait for the result."""
        req = self.submit(prompt_ids, sampling, lane, deltas=False)
        for kind, value in req.events():
            if kind == "done":
                return value
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- the loop
    def _run(self) -> None:
        turn = 0
        while True:
            with self._cond:
                while not self._stopping and not self._waiting and not self.active:
                    self._cond.wait()
                if self._stopping:
                    break
            with self._step_lock:
                started = time.perf_counter()
                touched: list[Request] = []
                try:
                    self._admit()
                    lanes = [lane for lane in self._lanes.values() if lane.rows or lane.pending]
                    # a step takes joining prompts out of lane.pending before it samples their first token
                    touched = [req for lane in lanes for req in lane.rows + lane.pending]
                    if lanes:
                        lane = lanes[turn % len(lanes)]
                        turn += 1
                        if self._packed:
                            self._step(lane)
                        else:
                            self._decode(lane)
                except Exception as e:  # one failure must not kill the server: fail the rows it touched
                    log.exception("generation step failed")
                    for lane in list(self._lanes.values()):
                        touched += lane.rows + lane.pending
                        self._lanes.pop(lane.name, None)
                    for req in touched:  # every request the step held is answered (a no-op if it was)
                        req.finish("error", f"generation failed: {type(e).__name__}")
                self.stats["busy_s"] += time.perf_counter() - started
        for lane in self._lanes.values():
            for req in lane.rows + lane.pending:
                req.finish("cancelled")
        for req in self._waiting:
            req.finish("cancelled")

    def _admit(self) -> None:
        while True:
            with self._cond:
                if not self._waiting:
                    return
                batchable = self._batchable is not False
                room = self.max_batch if batchable else 1
                if self.active >= room:
                    return
                req = self._waiting.popleft()
            if req.cancelled:
                self.stats["cancelled"] += 1
                req.finish("cancelled")
                continue
            if self._packed:  # prefilled inside the lane's next step
                self._lane(req.lane).pending.append(req)
                continue
            try:
                self._prefill(req)
            except Exception as e:
                log.exception("prefill failed")
                req.finish("error", f"generation failed: {type(e).__name__}")


def stream_text(
    engine: Engine, prompt_ids: Sequence[int], sampling: Sampling, lane: str | None = None
) -> Iterator[str]:
    """Text deltas of one reply, for a terminal (blocking); the request is cancelled if abandoned."""
    req = engine.submit(prompt_ids, sampling, lane)
    try:
        for kind, value in req.events():
            if kind == "delta":
                yield value
            elif value.finish_reason == "error":
                raise RuntimeError(value.error)
    finally:
        req.cancel()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (tests and shutdown)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
