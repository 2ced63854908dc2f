"""The Data pages' API: data folders under ``--runs``, a card's accounting, its rejects by step and
reason, duplicate clusters, length/turn histograms and a record's loss mask (:mod:`instructkit.studio.datasets`).

Every ``path`` and ``model`` goes through :meth:`RunsRoot.resolve`; the routes that read files or load a
tokenizer are plain functions, so FastAPI runs them off the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from instructkit.studio import datasets, kept
from instructkit.studio.errors import damaged
from instructkit.studio.state import StudioState, studio_state

router = APIRouter()


@router.get("/api/data")
def data_folders(state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    """Every folder under ``--runs`` holding a curate or generate card."""
    return {"root": str(state.root.root), "folders": datasets.list_data_folders(state.root)}


@router.get("/api/data/card")
def card(path: str, state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    """A data folder's accounting (in = kept + rejected, per step and reason) and its splits."""
    folder, card = datasets.data_folder(state.root, path)
    parent = folder.parent
    run = state.root.rel(parent) if folder != state.root.root and (parent / "recipe.yaml").is_file() else None
    with damaged(path):
        return {"path": state.root.rel(folder), "run": run, **datasets.accounting(card)}


@router.get("/api/data/rejects")
def rejects(
    path: str, step: str | None = None, reason: str | None = None, offset: int = 0, limit: int = 50,
    state: StudioState = Depends(studio_state),
) -> dict[str, Any]:  # fmt: skip
    """Rejects matching ``step`` and ``reason`` (``total`` of them; ``expected``: the card's count), a page
    of ``limit`` (at most 200) from ``offset``, each with what it duplicated or leaked from."""
    with damaged(path):
        return datasets.rejects_page(state.root, path, step or None, reason or None, offset, limit)


@router.get("/api/data/clusters")
def clusters(
    path: str, offset: int = 0, limit: int = 20, state: StudioState = Depends(studio_state)
) -> dict[str, Any]:
    """Duplicate clusters, largest first: a kept record with the records dropped as its duplicates."""
    with damaged(path):
        return datasets.clusters(state.root, path, offset, limit)


@router.get("/api/data/histograms")
def histograms(path: str, state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    """Words per record and turns per record of each split, binned."""
    with damaged(path):
        return kept.histograms(state.root, path)


@router.get("/api/data/mask")
def mask(
    path: str, split: str, index: int, model: str, max_length: int | None = None,
    state: StudioState = Depends(studio_state),
) -> dict[str, Any]:  # fmt: skip
    """Record ``index`` of ``split`` with ``model``'s chat template: each token, trained or context."""
    with damaged(path):
        return kept.mask_view(state.root, path, split, index, model, max_length)


@router.get("/api/data/models")
def models(state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    """What the mask view's model field suggests: bundled aliases, trained runs, model folders."""
    return {"models": kept.model_choices(state.root)}
