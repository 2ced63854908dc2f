"""``GET /``: the chat page (``serve/page.html``), one self-contained file with no external script or font,
served without the API key (the page asks for it and sends it with each API call)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from instructkit.serve.api.state import ServeState, serve_state

router = APIRouter()


@router.get("/", include_in_schema=False)
async def index(state: Annotated[ServeState, Depends(serve_state)]) -> Any:
    return HTMLResponse(state.page)
