"""The edge: what every request must satisfy before any route sees it, checked once, here.

- **Body size.** A body is at most as large as its kind of route allows: document uploads,
  bulk lists (usage batches, number imports) or anything else. A larger one is answered 413
  `payload_too_large` at once, whether the client declared its length, declared less than it sent,
  or sent it chunked with no length at all: the bytes are counted as they arrive.
- **No NUL characters.** No text in a request may hold U+0000 (nor, in JSON, half of a surrogate
  pair): PostgreSQL cannot store either, and no phone number, name, code or record id has one. The
  path, the query, the headers, JSON bodies and form fields are checked here, so no route has to;
  the answer is 422 `validation_failed` naming the field.

A pure ASGI middleware, so it sees the raw stream before any framework has parsed or buffered it,
and it hands the app the very bytes it read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from duckline.core import i18n
from duckline.core.config import Settings
from duckline.core.errors import ErrorCode
from duckline.web.errors import STATUS, error_body

# Put on a route (`openapi_extra=BULK`) whose body is a long list: it gets the bulk limit.
BODY_KIND = "x-body-kind"
BULK = {BODY_KIND: "bulk"}
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A JSON string can only carry NUL or a lone surrogate as an escape; without one, nothing to look for.
_SUSPECT_JSON = re.compile(rb"\\u(?:0000|[dD][89abAB])")


@dataclass(frozen=True)
class BodyLimits:
    default: int
    special: tuple[tuple[re.Pattern[str], int], ...]  # (path pattern, limit) for uploads and bulk routes

    def for_path(self, path: str) -> int:
        return next((limit for pattern, limit in self.special if pattern.match(path)), self.default)


def body_kind(route: Any) -> str:
    """upload (it takes a file), bulk (marked so) or default."""
    if any(_is_file(field.field_info.annotation) for field in route.dependant.body_params):
        return "upload"
    return str((route.openapi_extra or {}).get(BODY_KIND, "default"))


def limit_of(kind: str, settings: Settings) -> int:
    return {"upload": settings.upload_max_bytes, "bulk": settings.bulk_max_bytes}.get(kind, settings.body_max_bytes)


def body_limits(routes: Sequence[BaseRoute], settings: Settings) -> BodyLimits:
    """The limit of each route that is not the default, found by its full path (prefixes included)."""
    special = []
    for route in iter_route_contexts(routes):
        if isinstance(route.original_route, APIRoute) and set(route.methods or ()) & _METHODS_WITH_BODY:
            kind = body_kind(route)
            if kind != "default":
                special.append((route.path_regex, limit_of(kind, settings)))
    return BodyLimits(settings.body_max_bytes, tuple(special))


def _is_file(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, UploadFile):
        return True
    return any(_is_file(arg) for arg in getattr(annotation, "__args__", ()))


class EdgeGuard:
    """Refuses oversized bodies (413) and NUL characters anywhere in a request (422)."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        field = _nul_outside_body(scope)
        if field is not None:
            await _refuse(scope, send, ErrorCode.VALIDATION_FAILED, field)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length")
        if scope["method"] not in _METHODS_WITH_BODY and declared in (None, "0") and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # nothing to read
            return
        limit = self.limits.for_path(scope["path"])
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(scope, send, ErrorCode.PAYLOAD_TOO_LARGE, None, max_kb=limit // 1024)
            return
        body = await _read_body(receive, limit)
        if body is None:  # the client went away
            return
        if isinstance(body, _TooLarge):
            await _refuse(scope, send, ErrorCode.PAYLOAD_TOO_LARGE, None, max_kb=limit // 1024)
            return
        field = await _nul_in_body(scope, headers.get("content-type", ""), body)
        if field is not None:
            await _refuse(scope, send, ErrorCode.VALIDATION_FAILED, field)
            return
        await self.app(scope, _replay(body, receive), send)


class _TooLarge:
    pass


async def _read_body(receive: Receive, limit: int) -> bytes | _TooLarge | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay


async def _refuse(scope: Scope, send: Send, code: ErrorCode, field: str | None, **params: Any) -> None:
    language = i18n.negotiate(Request(scope).headers.get("accept-language"))
    body = error_body(language, code, field, **params)
    # The rest of a refused body is never read: the connection cannot be reused for another request.
    headers = {"Connection": "close"} if code is ErrorCode.PAYLOAD_TOO_LARGE else None
    await JSONResponse(body, status_code=STATUS[code.kind], headers=headers)(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _nul_outside_body(scope: Scope) -> str | None:
    """The first field outside the body that holds a NUL: "path", a query parameter or a header."""
    if "\x00" in scope["path"]:
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" in query or "\x00" in query:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return _printable(name)
    for name, value in scope["headers"]:
        if b"\x00" in value:
            return name.decode("latin-1")
    return None


async def _nul_in_body(scope: Scope, content_type: str, body: bytes) -> str | None:
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type in ("", "application/json") or media_type.endswith("+json"):  # no type: FastAPI reads JSON
        if not _SUSPECT_JSON.search(body):
            return None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return None  # not JSON: the route says so itself
        return next(_unstorable_strings(document), None)
    if media_type == "application/x-www-form-urlencoded":
        text = body.decode("latin-1")
        if "%00" not in text and "\x00" not in text:
            return None
        for name, value in parse_qsl(text, keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return _printable(name)
        return None
    if media_type == "multipart/form-data" and b"\x00" in body:  # any upload has NUL bytes: look closer
        return await _nul_in_multipart(scope, body)
    return None


async def _nul_in_multipart(scope: Scope, body: bytes) -> str | None:
    sent = False

    async def once() -> Message:
        nonlocal sent
        more, sent = not sent, True
        return {"type": "http.request", "body": body if more else b"", "more_body": False}

    request = Request(scope, once)
    try:
        form = await request.form()
    except Exception:
        return None
    try:
        for name, value in form.multi_items():
            text = (value.filename or "") if isinstance(value, UploadFile) else value
            if "\x00" in name or "\x00" in text:
                return _printable(name)
        return None
    finally:
        await form.close()


def _unstorable_strings(document: Any) -> Iterator[str]:
    """Paths (records.3.record_id) of the JSON strings, keys included, that no database can store."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _storable(value):
                yield path or "body"
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                child = f"{path}.{_printable(key)}" if path else _printable(key)
                if not _storable(key):
                    yield child
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend(
                (f"{path}.{index}" if path else str(index), item) for index, item in reversed(list(enumerate(value)))
            )


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _printable(name: str) -> str:
    return name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name
