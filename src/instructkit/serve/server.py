"""``instructkit serve MODEL``: an OpenAI-compatible HTTP server (FastAPI + uvicorn) over the batching engine.

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (``stream: true`` answers with
server-sent events ending ``data: [DONE]``), ``GET /v1/models`` (the base and every adapter, each a
``model`` id), ``GET /health``, and ``GET /`` (the chat page). Every request's generation runs on the
engine's thread, so the event loop only moves bytes.

Safe by default: it listens on 127.0.0.1; with an API key every request but the static page needs
``Authorization: Bearer KEY`` (compared in constant time); the body size, message count, prompt tokens
and ``max_tokens`` are capped; request bodies are checked strictly (``"max_tokens": true`` or
``"stream": "yes"`` is refused, not coerced); errors come back in OpenAI's shape ``{"error": {"message",
"type", "param", "code"}}`` and never carry a stack trace; one log line per request, with the status sent,
without prompt text unless ``log_prompts`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.resources
import ipaddress
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import jinja2
from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from instructkit.serve.engine.requests import QueueFull, Request, Result
from instructkit.serve.engine.sampling import Sampling
from instructkit.serve.engine.scheduler import Engine
from instructkit.serve.loading import Served

log = logging.getLogger("instructkit.serve")


@dataclass
class ServerConfig:
    """Limits and switches of one server; the CLI's options map 1:1 onto these fields."""

    host: str = "127.0.0.1"
    """Address to listen on; anything but a loopback address exposes the model to the network."""
    port: int = 8000
    api_key: str | None = None
    """When set, every API request needs ``Authorization: Bearer <api_key>``. None serves without a key; an
    empty or blank key is refused (it would let an empty token in), and so is one an HTTP header cannot
    carry as given (surrounding whitespace, characters other than printable ASCII)."""
    max_batch: int = 8
    """Requests decoded together in one forward pass (per adapter); 1 serves one request at a time."""
    max_queue: int = 64
    """Requests that may wait for a free slot; one more is answered 429 with Retry-After."""
    prefix_cache_mb: float = 256
    """Memory for recent prompts' key/value states (per adapter), so a prompt sharing a start with an
    earlier one (the chat template's system turn, a repeated question) prefills only the rest; 0 turns
    it off. The bundled model keeps about 46 KB per prompt token (fp32)."""
    draft_tokens: int = 2
    """Prompt-lookup draft tokens per greedy request and decoding step (n-gram speculation: the tokens that
    followed the last 2-3 tokens' earlier occurrence in the prompt or reply); a step checks them in the same
    forward pass and keeps those greedy decoding would pick, so replies do not change; 0 turns it off."""
    suffix_draft_tokens: int = 16
    """Most draft tokens per greedy request and step taken from earlier requests' prompts and replies
    (suffix speculation: where the request's last 8+ tokens occurred before, what followed them there; at
    most as many tokens as the match is long). Repeated traffic (the same question again, evaluation
    sets, retries) then decodes several tokens per step; checked like any draft, so replies do not
    change; 0 turns it off."""
    max_body_bytes: int = 1_000_000
    """Largest request body (413 beyond)."""
    max_messages: int = 128
    """Most messages in one chat request."""
    max_prompt_tokens: int | None = None
    """Longest prompt in tokens; None: the model's context length minus one."""
    max_tokens: int = 2048
    """Largest ``max_tokens`` a request may ask for."""
    default_max_tokens: int = 512
    """``max_tokens`` when a request does not say."""
    retry_after: int = 1
    """Seconds a 429 answer asks the client to wait."""
    log_prompts: bool = False
    """Put the prompt text in the request log line (off: it may hold private data)."""

    def __post_init__(self) -> None:
        key = self.api_key
        if key is None:
            return
        if not key.strip():
            raise ValueError(
                "the API key is empty: clients could authenticate with an empty Bearer token; give a real "
                "key, or none to serve without one"
            )
        if key != key.strip():
            raise ValueError(
                "the API key starts or ends with whitespace, which HTTP strips from the Authorization "
                "header, so no client could send it; remove the whitespace"
            )
        if not all(" " <= c <= "~" for c in key):
            raise ValueError(
                "the API key holds characters other than printable ASCII, which an Authorization header "
                "cannot carry reliably; use letters, digits and punctuation"
            )


# ---------------------------------------------------------------------------------------------- errors


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        405: "invalid_request_error",
        413: "invalid_request_error",
        422: "invalid_request_error",
        429: "rate_limit_error",
        500: "server_error",
        503: "server_error",
    }

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "message": self.message,
                "type": self.TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _validation_error(e: Any) -> APIError:
    """A 422 naming the field (``messages.0.content``) and saying what came. Of pydantic's errors the one
    deepest in the body is told (a part's bad ``type`` rather than "not a string"), with the others at the
    same place; a union's branch tags (``str``, ``list[str]``) are left out of the field's path."""
    fields = {name for schema in _SCHEMAS for name in schema.model_fields}

    def where(err: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(x for x in err.get("loc", ()) if isinstance(x, int) or x in fields)

    errors = e.errors() or [{"msg": "invalid"}]
    best = max((where(err) for err in errors), key=len)
    at = [err for err in errors if where(err) == best]
    msg = " or ".join(dict.fromkeys(err.get("msg", "invalid") for err in at))
    given = at[0].get("input")
    if given is None or isinstance(given, bool | int | float):  # say what came, when it is short
        shown = json.dumps(given) if not isinstance(given, int) or abs(given) < 10**20 else "a huge integer"
        msg += f", got {shown}"
    param = ".".join(str(x) for x in best) or None
    return APIError(422, f"{param or 'body'}: {msg}", param=param, code="invalid_value")


# ---------------------------------------------------------------------------------------------- schemas

# Bodies are validated strictly: a boolean is not an integer ("max_tokens": true), a string is not a
# boolean ("stream": "yes") or a number ("temperature": "0.5"); an integer is still a float. Unknown fields
# are ignored, as OpenAI's API does.
_STRICT = ConfigDict(extra="ignore", strict=True)
SEED_RANGE = (-(2**63), 2**64 - 1)
"""The seeds ``torch.Generator.manual_seed`` takes (a negative one stands for itself plus 2**64)."""
_Number = Annotated[float, Field(allow_inf_nan=False)]


class _Part(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_Part]

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class _StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


class _Common(BaseModel):
    """Fields both endpoints take."""

    model_config = _STRICT
    model: str | None = None
    temperature: _Number | None = Field(None, ge=0, le=2)
    top_p: _Number | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    n: int = 1
    stream: bool = False
    stream_options: _StreamOptions | None = None


class ChatBody(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None  # only false: log probabilities are not computed
    top_logprobs: int | None = Field(None, ge=0, le=20)


class CompletionBody(_Common):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=5)  # only null: log probabilities are not computed
    echo: bool = False  # only false


_SCHEMAS = (_Part, ChatMessage, _StreamOptions, ChatBody, CompletionBody)


# ---------------------------------------------------------------------------------------------- the app


def build_app(served: Served, engine: Engine, cfg: ServerConfig) -> Any:
    """The FastAPI app serving ``served`` through ``engine`` under ``cfg``'s limits."""
    created = int(time.time())
    context = engine.context_length
    prompt_cap = cfg.max_prompt_tokens or ((context - 1) if context else 32_768)
    page = importlib.resources.files("instructkit.serve").joinpath("page.html").read_text(encoding="utf-8")
    gen = getattr(served.model, "generation_config", None)
    samples_by_default = bool(getattr(gen, "do_sample", False))

    app = FastAPI(title="instructkit", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    app.state.served = served
    app.add_middleware(_RequestLog, log_prompts=cfg.log_prompts)

    @app.exception_handler(APIError)
    async def _api_error(request: HTTPRequest, e: APIError) -> Any:
        return e.response()

    @app.exception_handler(HTTPException)
    async def _http_error(request: HTTPRequest, e: HTTPException) -> Any:
        msg = {
            404: f"no route {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        return APIError(e.status_code, msg.get(e.status_code, str(e.detail)), code=None).response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: HTTPRequest, e: RequestValidationError) -> Any:
        return _validation_error(e).response()

    # An unexpected exception is answered 500 (and logged once, with its traceback) by _RequestLog, inside
    # Starlette's outermost error middleware, so the request's log line shows the status that was sent.

    def authorize(request: HTTPRequest) -> None:
        if cfg.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), cfg.api_key.encode())
        if not ok:
            why = "missing API key: send Authorization: Bearer KEY" if not header else "invalid API key"
            raise APIError(401, why, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def read_body(request: HTTPRequest, schema: type) -> Any:
        size = request.headers.get("content-length")
        too_big = APIError(413, f"request body over {cfg.max_body_bytes} bytes", code="request_too_large")
        if size is not None and size.isdigit() and int(size) > cfg.max_body_bytes:
            raise too_big
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > cfg.max_body_bytes:
                raise too_big
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            return schema.model_validate_json(raw)
        except ValidationError as e:
            bad = [err for err in e.errors() if err.get("type") == "json_invalid"]
            if bad:  # the parser's reason: "EOF while parsing", "invalid unicode code point", ...
                why = str(bad[0].get("ctx", {}).get("error", ""))[:120]
                msg = f"the body is not valid JSON ({why})" if why else "the body is not valid JSON"
                raise APIError(422, msg, code="invalid_json") from None
            raise _validation_error(e) from None

    def lane_for(body: Any) -> tuple[str, str | None]:
        name = body.model or served.names[0]
        try:
            return name, served.lane_of(name)
        except KeyError:
            raise APIError(
                404, f"model {name!r} is not served here; GET /v1/models lists {served.names}",
                param="model", code="model_not_found",
            ) from None  # fmt: skip

    def sampling_for(body: Any, max_tokens: int | None) -> Sampling:
        if body.n != 1:
            raise APIError(400, "only n=1 is supported", param="n", code="unsupported_value")
        if body.logprobs is not None and body.logprobs is not False:  # chat: true; completions: a number
            raise APIError(400, "logprobs are not supported", param="logprobs", code="unsupported_value")
        if getattr(body, "echo", False):
            raise APIError(400, "echo is not supported", param="echo", code="unsupported_value")
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise APIError(400, "stop: up to 4 non-empty strings", param="stop", code="invalid_value")
        wanted = max_tokens or min(cfg.default_max_tokens, cfg.max_tokens)
        if wanted > cfg.max_tokens:
            raise APIError(
                400, f"max_tokens {wanted} is over this server's cap of {cfg.max_tokens}",
                param="max_tokens", code="invalid_value",
            )  # fmt: skip
        if body.temperature is not None:
            temperature = body.temperature
        else:  # the model's own default: greedy unless its generation_config samples
            temperature = float(getattr(gen, "temperature", 1.0) or 1.0) if samples_by_default else 0.0
        top_p = body.top_p if body.top_p is not None else float(getattr(gen, "top_p", 1.0) or 1.0)
        return Sampling(
            max_tokens=wanted, temperature=temperature, top_p=top_p, seed=body.seed, stop=tuple(stops)
        )

    def check_prompt(ids: list[int], param: str) -> None:
        if not ids:
            raise APIError(400, "the prompt is empty", param=param, code="invalid_value")
        if len(ids) > prompt_cap:
            raise APIError(
                400, f"the prompt is {len(ids)} tokens; this server takes at most {prompt_cap}",
                param=param, code="context_length_exceeded",
            )  # fmt: skip

    def submit(
        request: HTTPRequest, ids: list[int], sampling: Sampling, lane: str | None, name: str, stream: bool
    ) -> Request:
        request.state.log = {"model": name, "prompt_tokens": len(ids)}
        try:
            return engine.submit(ids, sampling, lane, deltas=stream)
        except QueueFull as e:
            raise APIError(
                429, str(e), code="queue_full", headers={"Retry-After": str(cfg.retry_after)}
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

    def stream(
        request: HTTPRequest, req: Request, base: dict[str, Any], piece: Any, include_usage: bool
    ) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            try:
                first = piece(None, None)
                if first is not None:
                    yield _sse(base | {"choices": [first]})
                async for kind, value in req.aevents():
                    if kind == "delta":
                        yield _sse(base | {"choices": [piece(value, None)]})
                        continue
                    request.state.log["completion_tokens"] = value.completion_tokens
                    if value.finish_reason in ("error", "cancelled"):
                        err = APIError(500, value.error or "generation stopped", code="generation_failed")
                        yield _sse({"error": json.loads(err.response().body)["error"]})
                        break
                    yield _sse(base | {"choices": [piece("", value.finish_reason)]})
                    if include_usage:
                        yield _sse(base | {"choices": [], "usage": usage(value)})
                yield "data: [DONE]\n\n"
            finally:
                req.cancel()  # the client went away mid-stream (or we are done): free the slot

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # ------------------------------------------------------------------------------------ routes
    @app.get("/", include_in_schema=False)
    async def index() -> Any:
        return HTMLResponse(page)

    @app.get("/health")
    async def health(request: HTTPRequest) -> Any:
        authorize(request)
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

    @app.get("/v1/models")
    async def models(request: HTTPRequest) -> Any:
        authorize(request)
        return {"object": "list", "data": [_model_card(served, n, created) for n in served.names]}

    @app.get("/v1/models/{name:path}")
    async def model(request: HTTPRequest, name: str) -> Any:
        authorize(request)
        if name not in served.names:
            raise APIError(404, f"model {name!r} is not served here", param="model", code="model_not_found")
        return _model_card(served, name, created)

    @app.post("/v1/chat/completions")
    async def chat(request: HTTPRequest) -> Any:
        authorize(request)
        body = await read_body(request, ChatBody)
        name, lane = lane_for(body)
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
        check_prompt(ids, "messages")
        sampling = sampling_for(body, body.max_completion_tokens or body.max_tokens)
        if cfg.log_prompts:
            request.state.prompt = messages
        req = submit(request, ids, sampling, lane, name, body.stream)
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": name}
        if body.stream:

            def piece(text: str | None, finish: str | None) -> dict[str, Any] | None:
                if text is None:
                    return {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                return {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}

            include = body.stream_options is not None and body.stream_options.include_usage
            return stream(request, req, base, piece, include)
        result = await result_of(request, req)
        message = {"role": "assistant", "content": result.text}
        choice = {"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}
        return JSONResponse(base | {"object": "chat.completion", "choices": [choice], "usage": usage(result)})

    @app.post("/v1/completions")
    async def completions(request: HTTPRequest) -> Any:
        authorize(request)
        body = await read_body(request, CompletionBody)
        name, lane = lane_for(body)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise APIError(400, "one prompt per request", param="prompt", code="unsupported_value")
        ids = served.text_ids(prompts[0])
        check_prompt(ids, "prompt")
        sampling = sampling_for(body, body.max_tokens)
        if cfg.log_prompts:
            request.state.prompt = prompts[0]
        req = submit(request, ids, sampling, lane, name, body.stream)
        rid = f"cmpl-{uuid.uuid4().hex[:24]}"
        base = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": name}
        if body.stream:

            def piece(text: str | None, finish: str | None) -> dict[str, Any] | None:
                if text is None:
                    return None
                return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}

            include = body.stream_options is not None and body.stream_options.include_usage
            return stream(request, req, base, piece, include)
        result = await result_of(request, req)
        choice = {"index": 0, "text": result.text, "finish_reason": result.finish_reason, "logprobs": None}
        return JSONResponse(base | {"choices": [choice], "usage": usage(result)})

    return app


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _model_card(served: Served, name: str, created: int) -> dict[str, Any]:
    card = {"id": name, "object": "model", "created": created, "owned_by": "instructkit"}
    if name != served.names[0]:
        card["parent"] = served.names[0]
    return card


class _RequestLog:
    """Pure ASGI middleware: one log line per request once its response ends (streams included), with
    status, time, model and token counts; the prompt only when asked (``--log-prompts``)."""

    def __init__(self, app: Any, log_prompts: bool = False):
        self.app = app
        self.log_prompts = log_prompts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [0]
        failed = ""

        async def send_logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        except Exception as e:
            # Answered here rather than by Starlette's outermost error middleware, which sends its 500
            # outside this middleware (so the line said "disconnected") and re-raises (a second traceback).
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            failed = f" error={type(e).__name__}"
            if not status[0]:
                reply = APIError(500, "internal server error; the server log has the details").response()
                with contextlib.suppress(Exception):  # the client may be gone
                    await reply(scope, receive, send_logged)
        finally:
            state = scope.get("state") or {}
            info = state.get("log") or {}
            extra = "".join(f" {k}={v}" for k, v in info.items()) + failed
            if self.log_prompts and "prompt" in state:
                extra += f" prompt={json.dumps(state['prompt'], ensure_ascii=False)}"
            client = scope.get("client") or ("-", 0)
            log.info(
                "%s %s %s %s %.0fms%s",
                client[0],
                scope.get("method"),
                scope.get("path"),
                status[0] or "disconnected",
                (time.perf_counter() - start) * 1000,
                extra,
            )


# ---------------------------------------------------------------------------------------------- running


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    return False


def http_url(host: str, port: int) -> str:
    """``http://HOST:PORT`` with an IPv6 address in brackets (``http://[::1]:8000``) and its zone's ``%``
    escaped (RFC 6874), as a URL needs; every URL the server prints is made here."""
    if ":" in host and not host.startswith("["):
        host = "[" + host.replace("%", "%25") + "]"
    return f"http://{host}:{port}"


def start_engine(served: Served, cfg: ServerConfig) -> Engine:
    return Engine(
        served.model,
        served.tokenizer,
        max_batch=cfg.max_batch,
        max_queue=cfg.max_queue,
        activate=served.activate,
        prefix_cache_mb=cfg.prefix_cache_mb,
        draft_tokens=cfg.draft_tokens,
        suffix_draft_tokens=cfg.suffix_draft_tokens,
    ).start()


class ServerThread:
    """The server on a background thread, on a socket bound before it starts (port 0: a free port), so a
    caller knows the URL at once; ``with ServerThread(...) as url:`` stops the server and the engine on
    exit. The benchmark, the demo and the tests run it this way."""

    def __init__(self, served: Served, cfg: ServerConfig):
        import socket

        import uvicorn

        self.engine = start_engine(served, cfg)
        self.app = build_app(served, self.engine, cfg)
        self._sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((cfg.host, cfg.port))
        host, port = self._sock.getsockname()[:2]
        self.url = http_url(host, port)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._sock.close()
        self.engine.stop()


def run_server(served: Served, cfg: ServerConfig) -> None:
    """Serve until interrupted (Ctrl-C), then stop the engine."""
    import uvicorn

    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    if not is_loopback(cfg.host) and cfg.api_key is None:
        log.warning(
            "listening on %s without --api-key: anyone who can reach this address can use the model", cfg.host
        )
    engine = start_engine(served, cfg)
    try:
        app = build_app(served, engine, cfg)
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
    finally:
        engine.stop()
