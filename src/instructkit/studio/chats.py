"""The runs the studio has loaded for chat: each trained run loaded as ``instructkit chat`` loads it
(:func:`~instructkit.serve.loading.load_served`) with the decoding engine on top, the two most recently
used kept (the least recently used idle one's engine stopped and dropped when a third is asked for).

A trained run names its base model as its command was given it; a relative folder (``inputs/model`` in a
recipe) is relative to where that command ran, which for the studio's jobs is ``--runs``. So a run whose
base is such a folder is loaded with ``--runs`` as the working directory (:func:`run_base_paths`), as the
CLI run from there would load it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.studio.errors import StudioError
from instructkit.studio.runs import discover, kind_of

MAX_LOADED = 4
"""Runs kept loaded at once, as many as compare takes side by side (each holds its model's weights and an
engine thread: about 0.6 GB for a LoRA run of the bundled SmolLM2-135M in float32)."""

_cwd_lock = threading.Lock()


def trained_model(folder: Path) -> Path | None:
    """The folder holding ``folder``'s trained model (a train run's ``model/``, a recipe run's
    ``train/model/``), or None when training has not finished there."""
    from instructkit.train.saved_model import is_trained_run, model_folder

    return model_folder(folder) if is_trained_run(folder) else None


def trained_runs(root: Path) -> list[dict[str, Any]]:
    """Every run under ``root`` whose trained model exists: path, model folder, kind, task, method, base,
    and whether it can chat (a generative task)."""
    from instructkit.train.saved_model import read_info
    from instructkit.train.tasks import TASKS

    out = []
    for folder in discover(root):
        model = trained_model(folder)
        if model is None:
            continue
        try:
            info = read_info(model)
        except Exception as e:  # a damaged instructkit.json: listed, with the reason it cannot load
            out.append({"path": folder.relative_to(root).as_posix(), "kind": kind_of(folder),
                        "model": model.relative_to(root).as_posix(), "chat": False, "note": str(e)})  # fmt: skip
            continue
        task = TASKS.get(info.get("task"))
        out.append(
            {
                "path": folder.relative_to(root).as_posix(),
                "kind": kind_of(folder),
                "model": model.relative_to(root).as_posix(),
                "task": info.get("task"),
                "method": (info.get("method") or {}).get("name"),
                "base_model": info.get("base_model"),
                "chat": bool(task is not None and task.generative),
                "note": "",
            }
        )
    return out


def require_trained(root: Any, folder: Path, rel: str) -> Path:
    """``folder``'s trained model folder, or a 400 naming ``path`` when it has none."""
    model = trained_model(folder)
    if model is None:
        raise StudioError(
            400,
            f"path: {rel!r} has no trained model (a finished `instructkit train` run, or a recipe run "
            "whose train stage finished)",
            field="path",
            code="no_model",
        )
    if not model.resolve().is_relative_to(Path(root).resolve()):  # a symlinked model/ leading out
        raise StudioError(403, f"path: {rel!r} keeps its model outside the runs folder", field="path",
                          code="path_refused")  # fmt: skip
    return model


@contextlib.contextmanager
def run_base_paths(root: Path, model_dir: Path) -> Iterator[None]:
    """Load ``model_dir`` with ``root`` as the working directory when its base model is a folder named
    relative to it (and not found from here): see the module docstring. Held under a lock, for the
    few seconds a load takes; every other studio path is absolute."""
    from instructkit.train.saved_model import read_info

    try:
        base = str(read_info(model_dir).get("base_model") or "")
    except Exception:  # the loader names the problem
        base = ""
    relative = base and not Path(base).expanduser().is_absolute() and not Path(base).exists()
    if not (relative and (root / base).exists()):
        yield
        return
    with _cwd_lock:
        here = os.getcwd()
        os.chdir(root)
        try:
            yield
        finally:
            os.chdir(here)


@dataclass
class LoadedRun:
    """One run loaded for chat: the model as served, and its engine."""

    path: str
    """The run, relative to ``--runs``."""
    served: Any
    engine: Any
    loaded_s: float
    used: float = field(default_factory=time.monotonic)
    pending: int = 0
    """Requests between being handed this run and submitting to its engine (not evicted meanwhile)."""

    @property
    def lane(self) -> str | None:
        return self.served.lane_of(self.served.names[-1])

    def busy(self) -> bool:
        return bool(self.pending or self.engine.active or self.engine.waiting)


class ChatModels:
    """Up to ``capacity`` loaded runs, least recently used first; :meth:`close` stops every engine."""

    def __init__(self, root: Path, capacity: int = MAX_LOADED):
        self.root = root
        self.capacity = capacity
        self._runs: OrderedDict[str, LoadedRun] = OrderedDict()
        self._lock = threading.Lock()  # the dict
        self._load_lock = threading.Lock()  # one load at a time (each takes the CPU for seconds)
        self._closed = False

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def acquire(self, folder: Path) -> LoadedRun:
        """The loaded run at ``folder`` (loading it, and dropping the least recently used idle one, when
        needed), marked pending: the caller submits to its engine, then calls :meth:`release`. Blocking."""
        rel = folder.relative_to(self.root).as_posix()
        got = self._take(rel)
        if got is not None:
            return got
        with self._load_lock:
            got = self._take(rel)  # loaded by another request while this one waited
            if got is not None:
                return got
            model_dir = require_trained(self.root, folder, rel)
            self._make_room()
            run = self._load(folder, model_dir, rel)
            with self._lock:
                if self._closed:
                    run.engine.stop()
                    raise StudioError(503, "the studio is stopping", code="stopping")
                run.pending += 1
                self._runs[rel] = run
            return run

    def release(self, run: LoadedRun) -> None:
        with self._lock:
            run.pending -= 1

    def _take(self, rel: str) -> LoadedRun | None:
        with self._lock:
            run = self._runs.get(rel)
            if run is not None:
                self._runs.move_to_end(rel)
                run.used = time.monotonic()
                run.pending += 1
            return run

    def _make_room(self) -> None:
        with self._lock:
            while len(self._runs) >= self.capacity:
                idle = [rel for rel, run in self._runs.items() if not run.busy()]
                if not idle:
                    raise StudioError(
                        429,
                        f"{len(self._runs)} runs are loaded and replying ({', '.join(self._runs)}); at most "
                        f"{self.capacity} are kept loaded: retry when one has finished",
                        code="busy",
                    )
                victim = self._runs.pop(idle[0])  # the dict's order is least recently used first
                victim.engine.stop()

    def _load(self, folder: Path, model_dir: Path, rel: str) -> LoadedRun:
        from instructkit.decoding.engine.scheduler import Engine
        from instructkit.models import ModelNotFoundError
        from instructkit.serve.loading import AdapterError, load_served
        from instructkit.templates import TemplateError

        started = time.perf_counter()
        try:
            with run_base_paths(self.root, model_dir):
                served = load_served(str(model_dir))  # as `instructkit chat RUN` loads it
            if served.template is None:
                raise TemplateError(f"{rel} has no chat template; it cannot chat")
        except (ModelNotFoundError, AdapterError, TemplateError, ValueError, OSError) as e:
            raise StudioError(400, f"path: {rel}: {e}", field="path", code="load_failed") from None
        # the same engine settings as `instructkit chat`, so a greedy reply is the same one
        engine = Engine(served.model, served.tokenizer, max_batch=1, max_queue=8, activate=served.activate)
        engine.start()
        return LoadedRun(rel, served, engine, round(time.perf_counter() - started, 2))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            runs, self._runs = list(self._runs.values()), OrderedDict()
        for run in runs:
            run.engine.stop()


_make_lock = threading.Lock()


def chat_models(state: Any) -> ChatModels:
    """The studio's loaded runs (``state.chats``), made on first use; stopped when the studio stops."""
    with _make_lock:
        if state.chats is None:
            state.chats = ChatModels(state.root.root)
            state.closers.append(state.chats.close)
        return state.chats
