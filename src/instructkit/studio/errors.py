"""The studio API's one error shape: ``{"error": {"message", "field", "code"}}`` with an HTTP status.

``field`` names what was wrong (a form field by its dotted config path, a URL parameter), so a page can
show the message next to it; an unexpected exception is answered 500 with a one-line message, never a
stack trace.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("instructkit.studio")


class StudioError(Exception):
    """An error the API answers in its own shape: ``status``, a message for people, the field it is about."""

    def __init__(self, status: int, message: str, *, field: str | None = None, code: str = "invalid"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "field": self.field, "code": self.code}}


DAMAGE = (TypeError, AttributeError, KeyError, IndexError, ValueError)
"""What reading a damaged file raises past the readers' own checks: a list where a mapping belongs, a string
where a number does (``UnicodeDecodeError`` and JSON's errors are ``ValueError``)."""


@contextlib.contextmanager
def damaged(path: str, field: str = "path") -> Iterator[None]:
    """Answer an error from reading a damaged file under ``path`` with a 422 naming ``field``, not a 500."""
    try:
        yield
    except StudioError:
        raise
    except DAMAGE as e:
        log.warning("studio: %r holds a damaged file", path, exc_info=True)
        raise StudioError(422, f"{field}: {path!r} holds a damaged file ({type(e).__name__}: {e})"[:500],
                          field=field, code="damaged") from None  # fmt: skip


def add_error_handlers(app: Any) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(StudioError)
    async def _studio(request: Any, exc: StudioError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Any, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        if first.get("type") == "json_invalid":  # its loc is a character position, not a field
            err = StudioError(400, f"request: the body is not valid JSON ({first.get('msg', 'invalid')})")
            return JSONResponse(err.body(), status_code=400)
        err = StudioError(400, f"{where or 'request'}: {first.get('msg', 'invalid')}", field=where)
        return JSONResponse(err.body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Any, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "http_error"
        err = StudioError(exc.status_code, str(exc.detail), code=code)
        return JSONResponse(err.body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Any, exc: Exception) -> JSONResponse:
        log.exception("studio: %s %s failed", request.method, request.url.path)
        err = StudioError(500, f"internal error ({type(exc).__name__}); the studio's log has the details",
                          code="internal")  # fmt: skip
        return JSONResponse(err.body(), status_code=500)
