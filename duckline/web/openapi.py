"""The OpenAPI document lists every status an operation can answer, with the error body's schema.

Integrators generate clients from it, so what it says must be what the API does. Most statuses
follow from what a route depends on and takes, and are derived here once, for every route:

- 401 where a caller must be signed in (the route's caller dependency is an `Accepts`),
- 403 where roles apply, and on every signed-in request that changes something (a browser
  session must send its CSRF token),
- 404 where the path names something to look up, 422 where anything is read from the request,
  413 where a body is taken (with the largest accepted size as `x-max-body-bytes`).

What depends on the rules behind a route (409 conflicts, 429 rate limits, 503 an upstream that
did not answer, 400 an unreadable webhook) each route names itself with `errors(...)`; the
description and schema are filled in here. Signed-in operations also carry their security
schemes and `x-roles`, the roles that may call them.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field

from duckline.accounts.roles import Caller
from duckline.core.config import Settings
from duckline.web.deps import Accepts
from duckline.web.edge import BODY_KIND, body_kind, limit_of

ERROR_SCHEMA = "Error"
REF = f"#/components/schemas/{ERROR_SCHEMA}"
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API token from POST /api/v1/auth/tokens"},
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "duckline_session",
        "description": "a browser session from POST /api/v1/auth/login; unsafe requests also send X-CSRF-Token",
    },
}
DESCRIPTIONS = {
    400: "The request cannot be trusted or read (e.g. webhook_signature_invalid, webhook_payload_invalid).",
    401: "Not signed in, or the credentials are wrong (auth_required, login_failed).",
    403: "Signed in without a role this needs (forbidden), or a session request without its CSRF token (csrf_failed).",
    404: "No such resource, or not one the caller may see (not_found, or a more specific code).",
    409: "The request conflicts with the current state of things (the code says which).",
    413: "The body is larger than this operation accepts (payload_too_large).",
    422: "The request is not valid (validation_failed with details, or a more specific code); `field` names"
    " the offending field.",
    429: "Too many attempts or codes (rate_limited, otp_send_limit, otp_address_limit, or a more specific code);"
    " `Retry-After` says how many seconds to wait, and so does the message.",
    503: "A service Duckline depends on did not answer; safe to retry (e.g. payment_provider_error).",
}
RETRY_AFTER = {
    "description": "seconds until the request can succeed (sent with every refusal that passes with time)",
    "schema": {"type": "integer", "minimum": 1},
}
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SIGNED_IN = frozenset(Caller) - {Caller.ANONYMOUS}


class ErrorDetailOut(BaseModel):
    field: str
    problem: str | None


class ErrorBodyOut(BaseModel):
    code: str = Field(description="stable machine code, e.g. validation_failed")
    message: str = Field(description="in the caller's language")
    field: str | None = Field(description="the field at fault, if one is")
    details: list[ErrorDetailOut] | None = Field(default=None, description="each problem, for validation_failed")


class ErrorOut(BaseModel):
    error: ErrorBodyOut


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The statuses a route answers beyond those its dependencies imply, for `responses=`."""
    return {status: {} for status in statuses}


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the OpenAPI document with every operation's error statuses documented, the error
    schema and the security schemes in its components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document_errors(_keep_published_names(build()), app, settings)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _document_errors(schema: dict[str, Any], app: FastAPI, settings: Settings) -> None:
    components = schema.setdefault("components", {})
    error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    components.setdefault("schemas", {}).update(error_schema.pop("$defs", {}))
    components["schemas"][ERROR_SCHEMA] = error_schema
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                _document(operation, route, settings)
    if "HTTPValidationError" not in json.dumps(schema["paths"]):  # FastAPI's 422 body, never ours
        for name in ("HTTPValidationError", "ValidationError"):
            components["schemas"].pop(name, None)


def _document(operation: dict[str, Any], route: Any, settings: Settings) -> None:
    calls = set(_dependency_calls(route.dependant))
    accepts = [call for call in calls if isinstance(call, Accepts)]
    roles = sorted({role.value for call in accepts for role in call.roles or ()})
    signed_in = bool(accepts)
    # 403 where a signed-in caller of another kind (or role) is refused
    narrowed = any(call.roles is not None or call.accepted != _SIGNED_IN for call in accepts)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = {int(s) for s in responses if s.isdigit() and int(s) >= 400}
    if signed_in:
        statuses.add(401)
        if narrowed or set(route.methods) & _UNSAFE:
            statuses.add(403)
        operation["security"] = [{"bearer": []}, {"session": []}]
        if roles:
            operation["x-roles"] = roles
    if route.dependant.path_params:
        statuses.add(404)
    if _reads_input(route.dependant):
        statuses.add(422)
    operation.pop(BODY_KIND, None)  # how the edge finds the limit; the limit itself is what callers need
    if route.body_field is not None:
        statuses.add(413)
        operation["x-max-body-bytes"] = limit_of(body_kind(route), settings)
    for status in sorted(statuses):
        given = responses.get(str(status), {}).get("description")
        generic = given in (None, "Validation Error", http.client.responses.get(status))
        responses[str(status)] = {
            "description": DESCRIPTIONS.get(status, "Error") if generic else given,
            "content": {"application/json": {"schema": {"$ref": REF}}},
        }
        if status == 429:
            responses[str(status)]["headers"] = {"Retry-After": RETRY_AFTER}
    operation["responses"] = dict(sorted(responses.items()))


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _dependency_calls(sub)


def _reads_input(dependant: Dependant) -> bool:
    """Whether anything in the request is validated: parameters or a body, here or in a dependency."""
    if dependant.path_params or dependant.query_params or dependant.header_params or dependant.cookie_params:
        return True
    if dependant.body_params:
        return True
    return any(_reads_input(sub) for sub in dependant.dependencies)


# Models whose class name two modules share are named by their module path; these are the names
# published before the code moved into feature packages, kept so generated clients do not change.
PUBLISHED_NAMES = {
    "duckline__accounts__api__security__ProofIn": "duckline__web__api__security__ProofIn",
    "duckline__accounts__api__security__SessionOut": "duckline__web__api__security__SessionOut",
    "duckline__lines__care_schemas__ProofIn": "duckline__web__line_care_schemas__ProofIn",
    "duckline__accounts__schemas__SessionOut": "duckline__web__schemas__SessionOut",
}


def _keep_published_names(schema: dict[str, Any]) -> dict[str, Any]:
    """Renames in place (FastAPI keeps this very dict as app.openapi_schema)."""
    models = schema.get("components", {}).get("schemas", {})
    if PUBLISHED_NAMES.keys() & models.keys():
        _rename_refs(schema)
        named = {PUBLISHED_NAMES.get(key, key): value for key, value in models.items()}
        models.clear()
        models.update(sorted(named.items()))  # FastAPI lists them sorted
    return schema


def _rename_refs(node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.removeprefix("#/components/schemas/")
            node["$ref"] = "#/components/schemas/" + PUBLISHED_NAMES.get(name, name)
        for value in node.values():
            _rename_refs(value)
    elif isinstance(node, list):
        for value in node:
            _rename_refs(value)
