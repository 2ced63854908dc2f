"""The studio app: static pages at ``/``, the JSON API under ``/api`` (one router per page family).

``instructkit studio --runs DIR`` runs it (:func:`run_studio`); tests and the demo run it on a thread
(:class:`StudioThread`), on a free loopback port.
"""

from __future__ import annotations

import importlib
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from instructkit import __version__
from instructkit.serve.server import AppThread, http_url
from instructkit.studio.config import StudioConfig
from instructkit.studio.errors import add_error_handlers
from instructkit.studio.state import StudioState, authorize, studio_state

log = logging.getLogger("instructkit.studio")
STATIC = Path(__file__).parent / "static"
ROUTERS = ("runs", "data", "jobs", "chat", "export")
"""The API's routers, one module each under ``studio/api/`` (each defines ``router``)."""

info = APIRouter()


@info.get("/api/info")
async def _info(state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    return {
        "version": __version__,
        "runs": str(state.root.root),
        "key_required": state.cfg.api_key is not None,
    }


class BodyLimit:
    """ASGI wrapper answering 413 (in the API's error shape) for a request body over ``limit`` bytes, by its
    Content-Length or, for a chunked body, once the bytes read pass the limit. The body is read here and
    handed on whole (it is at most ``limit`` bytes): a limit raised from inside the app's own body reading
    would come back as FastAPI's 400 "error parsing the body"."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        from fastapi.responses import JSONResponse

        from instructkit.studio.errors import StudioError

        too_big = StudioError(413, f"request body over {self.limit} bytes", code="request_too_large")
        size = dict(scope.get("headers") or []).get(b"content-length", b"")
        if size.isdigit() and int(size) > self.limit:
            return await JSONResponse(too_big.body(), status_code=413)(scope, receive, send)
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await JSONResponse(too_big.body(), status_code=413)(scope, receive, send)
            if not message.get("more_body"):
                break
        body, sent = b"".join(chunks), False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect a streaming reply waits for

        await self.app(scope, replay, send)


def build_app(cfg: StudioConfig) -> FastAPI:
    state = StudioState(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        state.close()

    app = FastAPI(
        title="instructkit studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.studio = state
    add_error_handlers(app)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:  # no key: the page asks for it and sends it with every API call
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(info, dependencies=[Depends(authorize)])
    for name in ROUTERS:
        module = importlib.import_module(f"instructkit.studio.api.{name}")
        app.include_router(module.router, dependencies=[Depends(authorize)])
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    return app


def run_studio(cfg: StudioConfig) -> None:
    """Serve the studio until interrupted; running jobs are stopped (they resume as a killed CLI run)."""
    import uvicorn

    app = build_app(cfg)
    # Jobs run in the runs folder and write paths relative to it (a run's base model as ``inputs/model``),
    # so the studio process works there too: a run it chats with or exports finds its base model.
    os.chdir(app.state.studio.root.root)
    print(f"instructkit studio on {http_url(cfg.host, cfg.port)}/  (runs: {app.state.studio.root.root})")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)


class StudioThread(AppThread):
    """The studio on a background thread, on a free loopback port with ``port=0``: ``with StudioThread(cfg)
    as url:`` stops it, its jobs and its chat engines on exit."""

    def __init__(self, cfg: StudioConfig):
        app = build_app(cfg)
        self.state: StudioState = app.state.studio
        super().__init__(app, cfg.host, cfg.port, on_stop=self.state.close)
