"""From a checked request to the engine and back: submitting, waiting, streaming server-sent events.

Every request's generation runs on the engine's thread, so the event loop only moves bytes: a reply is
awaited through the request's asyncio queue (:func:`result_of`), or streamed from it as server-sent events
ending ``data: [DONE]`` (:func:`stream`). A client that hangs up cancels its request, so its slot goes to
the next one: polled every 0.25 s while waiting, and at once when a stream's response is abandoned. A full
queue is answered 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request as HTTPRequest
from fastapi.responses import StreamingResponse

from instructkit.decoding.engine.requests import QueueFull, Request, Result
from instructkit.decoding.engine.sampling import Sampling
from instructkit.serve.api.errors import APIError
from instructkit.serve.api.state import ServeState

Piece = Callable[[str | None, str | None], dict[str, Any] | None]
"""A stream's choice for a text delta (``None``: the opening one, if the endpoint sends one) and a finish
reason."""


def submit(
    state: ServeState,
    request: HTTPRequest,
    ids: list[int],
    sampling: Sampling,
    lane: str | None,
    name: str,
    stream: bool,
) -> Request:
    request.state.log = {"model": name, "prompt_tokens": len(ids)}
    try:
        return state.engine.submit(ids, sampling, lane, deltas=stream)
    except QueueFull as e:
        raise APIError(
            429, str(e), code="queue_full", headers={"Retry-After": str(state.cfg.retry_after)}
        ) from None


async def result_of(request: HTTPRequest, req: Request) -> Result:
    """Wait for the reply; a client that hangs up cancels it (its slot goes to the next request)."""

    async def finished() -> Result:
        async for kind, value in req.aevents():
            if kind == "done":
                return value
        raise AssertionError("unreachable")

    task = asyncio.ensure_future(finished())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                break
            if await request.is_disconnected():
                req.cancel()
        result = task.result()
    finally:
        req.cancel()
        task.cancel()
    request.state.log["completion_tokens"] = result.completion_tokens
    if result.finish_reason == "error":
        raise APIError(500, result.error or "generation failed", code="generation_failed")
    if result.finish_reason == "cancelled":
        raise APIError(503, "the request was cancelled (the server is stopping)", code="cancelled")
    return result


def usage(result: Result) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def stream(
    request: HTTPRequest, req: Request, base: dict[str, Any], piece: Piece, include_usage: bool
) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        try:
            first = piece(None, None)
            if first is not None:
                yield sse(base | {"choices": [first]})
            async for kind, value in req.aevents():
                if kind == "delta":
                    yield sse(base | {"choices": [piece(value, None)]})
                    continue
                request.state.log["completion_tokens"] = value.completion_tokens
                if value.finish_reason in ("error", "cancelled"):
                    err = APIError(500, value.error or "generation stopped", code="generation_failed")
                    yield sse({"error": json.loads(err.response().body)["error"]})
                    break
                yield sse(base | {"choices": [piece("", value.finish_reason)]})
                if include_usage:
                    yield sse(base | {"choices": [], "usage": usage(value)})
            yield "data: [DONE]\n\n"
        finally:
            req.cancel()  # the client went away mid-stream (or we are done): free the slot

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
