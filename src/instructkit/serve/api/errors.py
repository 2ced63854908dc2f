"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``, never a stack trace.

Every refusal is an :class:`APIError` raised where the reason is known (a route, a dependency, the body
reader); :func:`add_error_handlers` answers it, and turns FastAPI's own 404/405 and request validation
errors into the same shape, naming the field and what came. An unexpected exception is answered 500 (and
logged once, with its traceback) by the request log middleware (``access_log``), not here.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from instructkit.serve.api.protocol import SCHEMAS


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


def validation_error(e: Any) -> APIError:
    """A 422 naming the field (``messages.0.content``) and saying what came. Of pydantic's errors the one
    deepest in the body is told (a part's bad ``type`` rather than "not a string"), with the others at the
    same place; a union's branch tags (``str``, ``list[str]``) are left out of the field's path."""
    fields = {name for schema in SCHEMAS for name in schema.model_fields}

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


def add_error_handlers(app: FastAPI) -> None:
    """Answer :class:`APIError`, FastAPI's HTTP errors (no route, method not allowed) and its request
    validation errors in OpenAI's shape."""

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
        return validation_error(e).response()
