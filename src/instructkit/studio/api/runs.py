"""The runs API: the table of run folders, one run's page (``/api/run``), 2–4 runs side by side
(``/api/compare``), and any file under ``--runs`` (reports, plots) by path."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from instructkit.studio.errors import StudioError, damaged
from instructkit.studio.run_detail import compare_runs, run_detail
from instructkit.studio.runs import KINDS, kind_of, list_runs
from instructkit.studio.state import StudioState, studio_state

router = APIRouter()
COMPARE = (2, 4)
"""How many runs the compare page takes."""


@router.get("/api/runs")
async def runs(
    kind: str | None = None, status: str | None = None, q: str | None = None,
    state: StudioState = Depends(studio_state),
) -> dict[str, Any]:  # fmt: skip
    """Every run folder under ``--runs`` (``kind``, ``status`` and a path substring ``q`` filter it)."""
    if kind and kind not in KINDS:
        raise StudioError(400, f"kind: {kind!r} is not one of {', '.join(KINDS)}", field="kind")
    rows = list_runs(state.root.root)
    running = state.running()
    for row in rows:
        if row["path"] in running:
            row["status"] = "running"
            row["job"] = running[row["path"]]
    rows = [
        r for r in rows
        if (not kind or r["kind"] == kind) and (not status or r["status"] == status)
        and (not q or q.lower() in r["path"].lower())
    ]  # fmt: skip
    return {"root": str(state.root.root), "runs": rows}


def run_folder(state: StudioState, path: str) -> Path:
    """``path`` as a run folder under ``--runs``: 403 for one that leaves it, 404 for one that is not a
    run (no recipe, config or card the commands write)."""
    folder = state.root.resolve(path, field="path")
    if not folder.is_dir() or kind_of(folder) is None:
        raise StudioError(404, f"path: {path!r} is not a run folder", field="path", code="not_found")
    return folder


@router.get("/api/run")
def run(path: str, state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    """One run's page: stages, metrics before → after, loss curves, config, changed predictions, report."""
    folder = run_folder(state, path)
    with damaged(path):
        return run_detail(state.root.root, folder, state.running())


@router.get("/api/compare")
def compare(
    path: list[str] = Query(default=[]), state: StudioState = Depends(studio_state)
) -> dict[str, Any]:
    """2–4 runs side by side (``?path=a&path=b``): metrics with differences to the first, loss curves,
    config diff."""
    lo, hi = COMPARE
    if not lo <= len(path) <= hi:
        raise StudioError(400, f"path: compare takes {lo} to {hi} runs, got {len(path)}", field="path")
    folders = [run_folder(state, p) for p in path]
    if len(set(folders)) < len(folders):
        raise StudioError(400, "path: the same run is given twice", field="path")
    with damaged(", ".join(path)):
        return compare_runs(state.root.root, folders, state.running())


@router.get("/api/file")
async def file(path: str, state: StudioState = Depends(studio_state)) -> FileResponse:
    """A file under ``--runs`` (a report, a plot, a card), read-only."""
    target = state.root.resolve(path)
    if not target.is_file():
        raise StudioError(404, f"path: {path!r} is not a file", field="path", code="not_found")
    kind = mimetypes.guess_type(target.name)[0] or "text/plain"
    if target.suffix in (".jsonl", ".yaml", ".yml", ".md", ".log"):
        kind = "text/plain; charset=utf-8"
    # a report's own scripts must not run with the studio's origin: served as a sandboxed document
    headers = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}
    return FileResponse(target, media_type=kind, headers=headers)
