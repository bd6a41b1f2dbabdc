"""Errors leave as {"error": {"code", "message", "field"}}, the message in the caller's language."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode, Kind

STATUS = {
    Kind.INVALID: 422,
    Kind.BAD_REQUEST: 400,
    Kind.NOT_FOUND: 404,
    Kind.CONFLICT: 409,
    Kind.UNAUTHENTICATED: 401,
    Kind.FORBIDDEN: 403,
    Kind.RATE_LIMITED: 429,
    Kind.TOO_LARGE: 413,
    Kind.UNAVAILABLE: 503,
}


def caller_language(request: Request) -> str:
    return getattr(request.state, "language", None) or i18n.negotiate(request.headers.get("accept-language"))


def error_body(language: str, code: ErrorCode, field: str | None = None, **params: Any) -> dict[str, Any]:
    message = i18n.format_message(language, code.message, params)
    return {"error": {"code": code.code, "message": message, "field": field}}


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        body = error_body(caller_language(request), exc.error, exc.field, **exc.params)
        headers = {"WWW-Authenticate": "Bearer"} if exc.error.kind is Kind.UNAUTHENTICATED else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse(body, status_code=STATUS[exc.error.kind], headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
        if exc.errors() and all(e.get("loc", ("",))[0] == "path" for e in exc.errors()):
            # A path naming what cannot exist (an id out of range, not a number) names nothing.
            return JSONResponse(error_body(caller_language(request), ErrorCode.NOT_FOUND, location[0]), 404)
        body = error_body(caller_language(request), ErrorCode.VALIDATION_FAILED, ".".join(location) or None)
        body["error"]["details"] = [
            {"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "problem": e.get("msg")} for e in exc.errors()
        ]
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # the framework could not read the body (bytes that are not UTF-8, a broken
            # multipart form): as invalid as JSON that does not parse, and answered the same way
            return JSONResponse(error_body(caller_language(request), ErrorCode.VALIDATION_FAILED, "body"), 422)
        code = ErrorCode.NOT_FOUND if exc.status_code == 404 else ErrorCode.VALIDATION_FAILED
        body = error_body(caller_language(request), code)
        if exc.status_code not in (404, 422):
            body["error"]["code"] = f"http_{exc.status_code}"
            body["error"]["message"] = str(exc.detail)
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))
