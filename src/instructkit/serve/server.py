"""``instructkit serve MODEL``: the OpenAI-compatible server (FastAPI + uvicorn) over the batching engine.

:func:`build_app` puts the parts of :mod:`instructkit.serve.api` together: the shared state, the request
log, the error handlers and the routers (chat and text completions, models and health, the chat page).
The rest runs it: on 127.0.0.1 by default (anything else is warned about when it has no API key), until
interrupted (:func:`run_server`), or on a background thread for the benchmark, the demo and the tests
(:class:`ServerThread`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import time
from typing import Any

from fastapi import FastAPI

from instructkit.decoding.engine.scheduler import Engine
from instructkit.serve.api import completions, models, page
from instructkit.serve.api.access_log import RequestLog
from instructkit.serve.api.errors import add_error_handlers
from instructkit.serve.api.state import ServeState
from instructkit.serve.config import ServerConfig
from instructkit.serve.loading import Served

log = logging.getLogger("instructkit.serve")


def build_app(served: Served, engine: Engine, cfg: ServerConfig) -> Any:
    """The FastAPI app serving ``served`` through ``engine`` under ``cfg``'s limits."""
    app = FastAPI(title="instructkit", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = ServeState(served, engine, cfg)
    app.state.engine = engine
    app.state.served = served
    # One log line per request; an unexpected exception is answered 500 (and logged once, with its
    # traceback) there, inside Starlette's outermost error middleware, so the line shows the status sent.
    app.add_middleware(RequestLog, log_prompts=cfg.log_prompts)
    add_error_handlers(app)
    app.include_router(page.router)  # no API key: the page asks for it
    app.include_router(models.router)  # the API routers check the key (the authorize dependency)
    app.include_router(completions.router)
    return app


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
        packed_weights=cfg.packed_weights,
    ).start()


class AppThread:
    """An ASGI app served by uvicorn on a background thread, on a socket bound before it starts (port 0: a
    free port), so a caller knows the URL at once; ``with AppThread(app, host, port) as url:`` stops it on
    exit and then calls ``on_stop``. The server's and the studio's threads are this."""

    def __init__(self, app: Any, host: str, port: int, on_stop: Any = None):
        import socket

        import uvicorn

        self.app, self.on_stop = app, on_stop
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        bound_host, bound_port = self._sock.getsockname()[:2]
        self.url = http_url(bound_host, bound_port)
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
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
        if self.on_stop is not None:
            self.on_stop()


class ServerThread(AppThread):
    """The server and its engine on a background thread (:class:`AppThread`); the benchmark, the demo and
    the tests run it this way. Leaving the ``with`` block stops the engine too."""

    def __init__(self, served: Served, cfg: ServerConfig):
        self.engine = start_engine(served, cfg)
        super().__init__(build_app(served, self.engine, cfg), cfg.host, cfg.port, on_stop=self.engine.stop)


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
