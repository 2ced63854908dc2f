"""The studio's chat API: the runs one can chat with, and a reply streamed as server-sent events.

``POST /api/chat {path, messages, max_tokens, temperature}`` loads the run as ``instructkit chat`` does
(:mod:`instructkit.studio.chats`), renders ``messages`` with its chat template and decodes through its
engine: ``data: {"delta": "..."}`` per piece of text, then ``data: {"done": true, "finish_reason": ...,
"text": <the whole reply>, ...}`` (or ``data: {"error": {...}}``). A client that hangs up cancels its
request.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from instructkit.studio.chats import MAX_LOADED, chat_models, trained_runs
from instructkit.studio.errors import StudioError
from instructkit.studio.state import StudioState, studio_state

router = APIRouter()

MAX_TOKENS = 1024
"""Longest reply a request may ask for (a studio reply is read on a page, not a document)."""
MAX_MESSAGES = 64
"""Most messages in one conversation (system, user and assistant turns together)."""
MAX_CHARS = 32_000
"""Most characters in a conversation's messages together."""
ROLES = ("system", "user", "assistant")


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str
    content: str


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    """The run, relative to ``--runs``."""
    messages: list[Message]
    max_tokens: int = 256
    temperature: float = 0.0
    """0: greedy (the reply ``instructkit chat`` gives)."""


@router.get("/api/chat/models")
def models(state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    """Every run whose trained model exists (``chat``: whether it generates text), and those loaded now."""
    return {
        "runs": trained_runs(state.root.root),
        "loaded": state.chats.loaded() if state.chats is not None else [],
        "max_loaded": MAX_LOADED,
        "max_tokens": MAX_TOKENS,
        "max_messages": MAX_MESSAGES,
    }


def check_body(body: ChatBody) -> list[dict[str, str]]:
    """The conversation as plain dicts, after the limits and the turn order are checked (400 naming the
    field otherwise)."""
    if not 1 <= body.max_tokens <= MAX_TOKENS:
        raise StudioError(
            400, f"max_tokens: {body.max_tokens} is not between 1 and {MAX_TOKENS}", field="max_tokens"
        )
    if not 0.0 <= body.temperature <= 2.0:
        raise StudioError(
            400, f"temperature: {body.temperature} is not between 0 (greedy) and 2", field="temperature"
        )
    messages = body.messages
    if not messages or len(messages) > MAX_MESSAGES:
        raise StudioError(
            400, f"messages: {len(messages)} messages; 1 to {MAX_MESSAGES} are taken", field="messages"
        )
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            raise StudioError(
                400,
                f"messages.{i}.role: {m.role!r} is not one of {', '.join(ROLES)}",
                field=f"messages.{i}.role",
            )
        if m.role == "system" and i:
            raise StudioError(
                400, f"messages.{i}.role: a system message comes first", field=f"messages.{i}.role"
            )
    if messages[-1].role != "user" or not messages[-1].content.strip():
        raise StudioError(400, "messages: the last message is the user's, and not empty", field="messages")
    chars = sum(len(m.content) for m in messages)
    if chars > MAX_CHARS:
        raise StudioError(400, f"messages: {chars} characters; at most {MAX_CHARS}", field="messages")
    return [{"role": m.role, "content": m.content} for m in messages]


def sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


@router.post("/api/chat")
async def chat(body: ChatBody, state: StudioState = Depends(studio_state)) -> StreamingResponse:
    """Stream the run's reply to ``messages`` (see the module docstring)."""
    from instructkit.decoding.engine.requests import EngineStopped, QueueFull
    from instructkit.decoding.engine.sampling import Sampling
    from instructkit.templates import TemplateError

    folder = state.root.resolve(body.path, field="path")
    messages = check_body(body)
    chats = chat_models(state)
    run = await run_in_threadpool(chats.acquire, folder)
    try:
        try:
            ids = run.served.prompt_ids(messages)
        except (TemplateError, ValueError) as e:
            raise StudioError(400, f"messages: {e}", field="messages") from None
        context = run.engine.context_length
        if context and len(ids) >= context:
            raise StudioError(
                400, f"messages: the conversation is {len(ids)} tokens; {run.path} takes at most {context - 1}",
                field="messages", code="context_length_exceeded",
            )  # fmt: skip
        try:
            req = run.engine.submit(ids, Sampling(body.max_tokens, body.temperature), run.lane)
        except QueueFull as e:
            raise StudioError(429, f"{run.path}: {e}", code="busy") from None
        except EngineStopped:
            raise StudioError(503, "the studio is stopping", code="stopping") from None
    finally:
        chats.release(run)
    started = time.perf_counter()

    async def events() -> AsyncIterator[str]:
        try:
            async for kind, value in req.aevents():
                if kind == "delta":
                    yield sse({"delta": value})
                elif value.finish_reason in ("error", "cancelled"):
                    why = (
                        value.error or "the reply was cancelled (the run was unloaded or the studio stopped)"
                    )
                    yield sse({"error": {"message": why, "field": None, "code": value.finish_reason}})
                else:
                    yield sse(
                        {
                            "done": True,
                            "finish_reason": value.finish_reason,
                            "text": value.text,
                            "prompt_tokens": value.prompt_tokens,
                            "completion_tokens": value.completion_tokens,
                            "seconds": round(time.perf_counter() - started, 3),
                        }
                    )
        finally:
            req.cancel()  # the client went away mid-stream (or the reply is over): free the slot

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
