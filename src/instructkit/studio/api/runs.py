"""The runs API: the table of run folders, and any file under ``--runs`` (reports, plots) by path."""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from instructkit.studio.errors import StudioError
from instructkit.studio.runs import KINDS, list_runs
from instructkit.studio.state import StudioState, studio_state

router = APIRouter()


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
