"""The studio's export API: a trained run as a standalone model, verified before it is written.

``POST /api/export {path, format, out, merge, dtype}`` runs :func:`instructkit.serve.export.export_run`
(what ``instructkit export RUN -o OUT`` runs) on a worker thread and answers with the verification it
reports: the largest logit difference from the trained model on fixed prompts, the tolerance, and whether
the chat template renders and tokenizes identically after the reload. ``out`` is a path under ``--runs``
(a folder for ``hf``, a ``.gguf`` file for ``gguf``); the exporter refuses a folder holding anything but an
earlier export, and writes nothing when the check fails. One export at a time (429 for another).
"""

from __future__ import annotations

import threading
import time
import weakref
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from instructkit.studio.chats import require_trained, run_base_paths, trained_runs
from instructkit.studio.errors import StudioError
from instructkit.studio.jobs import JOBS_DIR
from instructkit.studio.state import StudioState, studio_state

router = APIRouter()

_busy: weakref.WeakKeyDictionary[StudioState, threading.Lock] = weakref.WeakKeyDictionary()
_busy_lock = threading.Lock()

STUDIO_DIR = JOBS_DIR.split("/")[0]
"""The studio's own folder under ``--runs`` (its jobs): no export goes there."""
FLAGS = {"-o": "out", "--format": "format", "--dtype": "dtype", "--merge": "merge"}
"""The exporter's messages name the CLI's flags; each is this form field."""


class ExportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    """The trained run, relative to ``--runs``."""
    out: str
    """Where the export goes, relative to ``--runs``: a folder (``hf``) or a ``.gguf`` file (``gguf``)."""
    format: str = "hf"
    merge: bool = True
    """Fold a LoRA / ln-tuning update into the base weights (runs that train their own weights need none)."""
    dtype: str = "float32"


def _lock(state: StudioState) -> threading.Lock:
    with _busy_lock:
        return _busy.setdefault(state, threading.Lock())


@router.get("/api/export/options")
def options(state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    """What the form offers: the formats and dtypes the exporter takes, the trained runs, whether one runs."""
    from instructkit.serve.export import DTYPES, FORMATS

    return {
        "formats": list(FORMATS),
        "dtypes": list(DTYPES),
        "runs": trained_runs(state.root.root),
        "busy": _lock(state).locked(),
    }


def _field(message: str) -> str:
    for flag, name in FLAGS.items():
        if message.startswith(flag + " ") or f" {flag} " in message[:80]:
            return name
    return "path"


@router.post("/api/export")
async def export(body: ExportBody, state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    """Export the run and answer with the exporter's verification (see the module docstring)."""
    from instructkit.serve.export import DTYPES, FORMATS

    root = state.root
    folder = root.resolve(body.path, field="path")
    model_dir = require_trained(root.root, folder, body.path)
    if body.format not in FORMATS:
        raise StudioError(400, f"format: {body.format!r} is not one of {', '.join(FORMATS)}", field="format")
    if body.dtype not in DTYPES:
        raise StudioError(400, f"dtype: {body.dtype!r} is not one of {', '.join(DTYPES)}", field="dtype")
    out = root.resolve(body.out, field="out", must_exist=False)
    if out == root.root:
        raise StudioError(400, "out: name a new folder under the runs folder, not the runs folder itself",
                          field="out")  # fmt: skip
    if root.rel(out).split("/")[0] == STUDIO_DIR:
        raise StudioError(403, f"out: {body.out!r} is in the studio's own folder {STUDIO_DIR}/", field="out",
                          code="path_refused")  # fmt: skip
    lock = _lock(state)
    if not lock.acquire(blocking=False):
        raise StudioError(429, "an export is already running; retry when it has finished", code="busy")
    try:
        return await run_in_threadpool(_export, root.root, folder, model_dir, out, body)
    finally:
        lock.release()


def _export(root: Path, folder: Path, model_dir: Path, out: Path, body: ExportBody) -> dict[str, Any]:
    from instructkit.files import WriteError
    from instructkit.models import ModelNotFoundError
    from instructkit.serve.export import export_run

    log: list[str] = []
    started = time.perf_counter()
    try:
        with run_base_paths(root, model_dir):
            result = export_run(
                folder, out, merge=body.merge, fmt=body.format, dtype=body.dtype, log=log.append
            )
    except (
        ValueError,
        ModelNotFoundError,
        WriteError,
    ) as e:  # ExportError, MethodError: the exporter's words
        message = str(e).replace(str(root) + "/", "")
        raise StudioError(400, message, field=_field(message), code="export_failed") from None

    def rel(p: Path | None) -> str | None:
        return None if p is None else Path(p).resolve().relative_to(root).as_posix()

    return {
        "verified": True,  # export_run raises, writing nothing, when the reloaded export does not match
        "path": rel(result.path),
        "format": result.format,
        "dtype": result.dtype,
        "method": result.method,
        "merged": result.merged,
        "max_abs_diff": result.max_abs_diff,
        "tolerance": result.tolerance,
        "tolerance_rule": result.tolerance_rule,
        "prompts": result.prompts,
        "template": result.template,
        "source_verified": result.source_verified,
        "manifest": rel(result.manifest),
        "notes": result.notes,
        "summary": result.summary().replace(str(root) + "/", ""),
        "log": [line.replace(str(root) + "/", "") for line in log],
        "seconds": round(time.perf_counter() - started, 2),
    }
