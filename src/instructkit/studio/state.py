"""What the studio's routers share: the config, the runs root, and the parts that own processes or models.

``jobs`` (the training jobs the studio started, :mod:`instructkit.studio.jobs`) and ``chats`` (the runs
loaded for chat, :mod:`instructkit.studio.api.chat`) are made on first use by their modules; ``closers``
are called when the app stops, so no job or engine outlives it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import Request

from instructkit.studio.config import StudioConfig
from instructkit.studio.errors import StudioError
from instructkit.studio.paths import RunsRoot


class StudioState:
    def __init__(self, cfg: StudioConfig):
        self.cfg = cfg
        self.root = RunsRoot(cfg.runs)
        self.jobs: Any = None
        self.chats: Any = None
        self.closers: list[Callable[[], None]] = []

    def check_key(self, request: Request) -> None:
        key = self.cfg.api_key
        if key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        # constant time: a key is not found out one character at a time from response times
        if not (scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())):
            raise StudioError(
                401, "missing API key" if not header else "invalid API key", code="invalid_api_key"
            )

    def running(self) -> dict[str, dict[str, Any]]:
        """Run path → the job the studio is running there (empty when none)."""
        return self.jobs.running() if self.jobs is not None else {}

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()


async def studio_state(request: Request) -> StudioState:
    """The app's shared state (a FastAPI dependency)."""
    return request.app.state.studio


async def authorize(request: Request) -> None:
    """The API key check, a dependency of every ``/api`` route (not of the static pages)."""
    request.app.state.studio.check_key(request)
