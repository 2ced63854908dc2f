"""``POST /v1/chat/completions`` and ``POST /v1/completions``: a prompt in, a reply out, or streamed.

Both endpoints check their body the same way (:class:`~instructkit.serve.api.state.ServeState`), submit
one request to the engine and answer in OpenAI's shape; they differ in how the prompt is made (the model's
chat template over the messages, or the text as given) and in the shape of a choice. ``stream: true``
answers with server-sent events ending ``data: [DONE]``; ``stream_options.include_usage`` adds a last
chunk with the token counts.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse

from instructkit.serve.api.errors import APIError
from instructkit.serve.api.generation import result_of, stream, submit, usage
from instructkit.serve.api.protocol import ChatBody, CompletionBody
from instructkit.serve.api.state import ServeState, authorize, serve_state

router = APIRouter(dependencies=[Depends(authorize)])
State = Annotated[ServeState, Depends(serve_state)]


def chat_piece(text: str | None, finish: str | None) -> dict[str, Any] | None:
    """A chat stream's choice: the assistant role first, then content deltas, then the finish reason."""
    if text is None:
        return {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    return {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}


def completion_piece(text: str | None, finish: str | None) -> dict[str, Any] | None:
    """A completion stream's choice: text deltas, then the finish reason (no opening chunk)."""
    if text is None:
        return None
    return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}


def chat_prompt(state: ServeState, body: ChatBody, name: str) -> tuple[list[int], list[dict[str, str]]]:
    """The prompt's token ids (the model's chat template over the messages) and the messages as dicts."""
    cfg, served = state.cfg, state.served
    if len(body.messages) > cfg.max_messages:
        raise APIError(
            400, f"{len(body.messages)} messages; this server takes at most {cfg.max_messages}",
            param="messages", code="invalid_value",
        )  # fmt: skip
    if served.template is None:
        raise APIError(400, f"{name} has no chat template; use /v1/completions", param="messages")
    messages = [m.as_dict() for m in body.messages]
    try:
        ids = served.prompt_ids(messages)
    except jinja2.TemplateError as e:  # the template's own raise_exception ("roles must alternate")
        raise APIError(
            400, f"the model's chat template refused these messages: {e}", param="messages",
            code="invalid_value",
        ) from None  # fmt: skip
    state.check_prompt(ids, "messages")
    return ids, messages


@router.post("/v1/chat/completions")
async def chat(request: HTTPRequest, state: State) -> Any:
    body = await state.read_body(request, ChatBody)
    name, lane = state.lane_for(body)
    ids, messages = chat_prompt(state, body, name)
    sampling = state.sampling_for(body, body.max_completion_tokens or body.max_tokens)
    if state.cfg.log_prompts:
        request.state.prompt = messages
    req = submit(state, request, ids, sampling, lane, name, body.stream)
    rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": name}
    if body.stream:
        include = body.stream_options is not None and body.stream_options.include_usage
        return stream(request, req, base, chat_piece, include)
    result = await result_of(request, req)
    message = {"role": "assistant", "content": result.text}
    choice = {"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}
    return JSONResponse(base | {"object": "chat.completion", "choices": [choice], "usage": usage(result)})


@router.post("/v1/completions")
async def completions(request: HTTPRequest, state: State) -> Any:
    body = await state.read_body(request, CompletionBody)
    name, lane = state.lane_for(body)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise APIError(400, "one prompt per request", param="prompt", code="unsupported_value")
    ids = state.served.text_ids(prompts[0])
    state.check_prompt(ids, "prompt")
    sampling = state.sampling_for(body, body.max_tokens)
    if state.cfg.log_prompts:
        request.state.prompt = prompts[0]
    req = submit(state, request, ids, sampling, lane, name, body.stream)
    rid = f"cmpl-{uuid.uuid4().hex[:24]}"
    base = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": name}
    if body.stream:
        include = body.stream_options is not None and body.stream_options.include_usage
        return stream(request, req, base, completion_piece, include)
    result = await result_of(request, req)
    choice = {"index": 0, "text": result.text, "finish_reason": result.finish_reason, "logprobs": None}
    return JSONResponse(base | {"choices": [choice], "usage": usage(result)})
