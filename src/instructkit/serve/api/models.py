"""``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /health``: what is served, and how it is doing.

The model list holds the base model and every adapter, each a ``model`` id a request may name (an
adapter's card names the base as its ``parent``). ``/health`` tells the engine's state: requests decoding
and waiting, how requests share forward passes (``batching``), the engine's counters (steps, draft tokens
proposed and accepted, ...), the prefix cache's hits and bytes and the suffix drafts' stored tokens (each
``null`` when turned off). Both need the API key when the server has one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from instructkit.serve.api.errors import APIError
from instructkit.serve.api.state import ServeState, authorize, serve_state
from instructkit.serve.loading import Served

router = APIRouter(dependencies=[Depends(authorize)])
State = Annotated[ServeState, Depends(serve_state)]


def model_card(served: Served, name: str, created: int) -> dict[str, Any]:
    card = {"id": name, "object": "model", "created": created, "owned_by": "instructkit"}
    if name != served.names[0]:
        card["parent"] = served.names[0]
    return card


@router.get("/health")
async def health(state: State) -> Any:
    engine = state.engine
    cache = engine.prefix_cache
    return {
        "status": "ok",
        "active": engine.active,
        "waiting": engine.waiting,
        "batching": engine.batching,
        "engine": dict(engine.stats),
        "prefix_cache": dict(cache.stats, bytes=cache.bytes) if cache is not None else None,
        "suffix_drafts": (
            {"tokens": engine.suffix_drafts.tokens} if engine.suffix_drafts is not None else None
        ),
    }


@router.get("/v1/models")
async def models(state: State) -> Any:
    served = state.served
    return {"object": "list", "data": [model_card(served, n, state.created) for n in served.names]}


@router.get("/v1/models/{name:path}")
async def model(name: str, state: State) -> Any:
    if name not in state.served.names:
        raise APIError(404, f"model {name!r} is not served here", param="model", code="model_not_found")
    return model_card(state.served, name, state.created)
