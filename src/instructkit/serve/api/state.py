"""What every route shares (:class:`ServeState`: the model, the engine, the limits) and the checks each
request passes before it reaches the engine.

Safe by default: with an API key every request but the static page needs ``Authorization: Bearer KEY``
(compared in constant time; the :func:`authorize` dependency of the API routers); the body size, message
count, prompt tokens and ``max_tokens`` are capped, each refusal naming the limit. The body is read in
chunks and refused (413) as soon as it passes ``max_body_bytes``, whatever its Content-Length says, and
parsed by the protocol models only then.
"""

from __future__ import annotations

import hmac
import importlib.resources
import time
from typing import Any

from fastapi import Request as HTTPRequest
from pydantic import ValidationError

from instructkit.decoding.engine.sampling import Sampling
from instructkit.decoding.engine.scheduler import Engine
from instructkit.serve.api.errors import APIError, validation_error
from instructkit.serve.config import ServerConfig
from instructkit.serve.loading import Served


class ServeState:
    """The served model, its engine and the server's limits (``app.state.serve``), with the checks that
    turn a request body into a prompt and a :class:`Sampling`."""

    def __init__(self, served: Served, engine: Engine, cfg: ServerConfig):
        self.served, self.engine, self.cfg = served, engine, cfg
        self.created = int(time.time())
        context = engine.context_length
        self.prompt_cap = cfg.max_prompt_tokens or ((context - 1) if context else 32_768)
        page = importlib.resources.files("instructkit.serve").joinpath("page.html")
        self.page = page.read_text(encoding="utf-8")
        self.generation_config = getattr(served.model, "generation_config", None)
        self.samples_by_default = bool(getattr(self.generation_config, "do_sample", False))

    def check_key(self, request: HTTPRequest) -> None:
        cfg = self.cfg
        if cfg.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), cfg.api_key.encode())
        if not ok:
            why = "missing API key: send Authorization: Bearer KEY" if not header else "invalid API key"
            raise APIError(401, why, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def read_body(self, request: HTTPRequest, schema: type) -> Any:
        limit = self.cfg.max_body_bytes
        size = request.headers.get("content-length")
        too_big = APIError(413, f"request body over {limit} bytes", code="request_too_large")
        if size is not None and size.isdigit() and int(size) > limit:
            raise too_big
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
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
            raise validation_error(e) from None

    def lane_for(self, body: Any) -> tuple[str, str | None]:
        """The model id a body asks for (the base model's when it names none) and its adapter lane."""
        served = self.served
        name = body.model or served.names[0]
        try:
            return name, served.lane_of(name)
        except KeyError:
            raise APIError(
                404, f"model {name!r} is not served here; GET /v1/models lists {served.names}",
                param="model", code="model_not_found",
            ) from None  # fmt: skip

    def sampling_for(self, body: Any, max_tokens: int | None) -> Sampling:
        cfg, gen = self.cfg, self.generation_config
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
            temperature = float(getattr(gen, "temperature", 1.0) or 1.0) if self.samples_by_default else 0.0
        top_p = body.top_p if body.top_p is not None else float(getattr(gen, "top_p", 1.0) or 1.0)
        return Sampling(
            max_tokens=wanted, temperature=temperature, top_p=top_p, seed=body.seed, stop=tuple(stops)
        )

    def check_prompt(self, ids: list[int], param: str) -> None:
        if not ids:
            raise APIError(400, "the prompt is empty", param=param, code="invalid_value")
        if len(ids) > self.prompt_cap:
            raise APIError(
                400, f"the prompt is {len(ids)} tokens; this server takes at most {self.prompt_cap}",
                param=param, code="context_length_exceeded",
            )  # fmt: skip


# Both dependencies are coroutines: FastAPI runs a plain function dependency on its thread pool, a hop per
# request for a dictionary lookup.


async def serve_state(request: HTTPRequest) -> ServeState:
    """The app's shared state (a FastAPI dependency)."""
    return request.app.state.serve


async def authorize(request: HTTPRequest) -> None:
    """The API key check, as a FastAPI dependency of every API route (not of the static page)."""
    request.app.state.serve.check_key(request)
