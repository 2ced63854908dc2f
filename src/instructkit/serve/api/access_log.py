"""One log line per request, and the 500 answer to an unexpected exception.

The line is written once the response has ended (streams included): client, method, path, the status
that was sent (or ``disconnected``), time, model and token counts, and the prompt only when asked
(``log_prompts``: it may hold private data). Routes put what they know in ``request.state.log``.

An unexpected exception is answered 500 here, inside Starlette's outermost error middleware, rather than
by it: that one sends its 500 outside this middleware (so the line said "disconnected") and re-raises (a
second traceback). The 500 carries no detail; the log has the traceback, once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

from instructkit.serve.api.errors import APIError

log = logging.getLogger("instructkit.serve")


class RequestLog:
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
