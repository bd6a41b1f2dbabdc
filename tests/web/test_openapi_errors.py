"""The OpenAPI document lists the error statuses each operation answers, with the error body's
schema, so that clients generated from it know them; and it bounds every number and text a
request may carry. Checked against what the API does, not only against what the document says:
each operation is called without credentials and, where roles apply, as a subscriber."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from duckline.accounts.roles import Role
from duckline.runtime import Runtime
from tests.factories import numbers, register_and_verify, staff

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture
def document(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    if not runtime.settings.is_sqlite:
        pytest.skip("the document does not depend on the database")
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def concrete(path: str) -> str:
    """A path with each parameter filled in (a row id, a plan code, a format: all the same to auth)."""
    return re.sub(r"\{[^}]+\}", "1", path)


def error_schema(op: dict[str, Any], status: int) -> str | None:
    response = op["responses"].get(str(status))
    return response and response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def test_every_error_an_operation_documents_has_the_error_schema(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(document), "FastAPI's own 422 body is not what we send"
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    for path, method, op in operations(document):
        for status in op["responses"]:
            if int(status) >= 400:
                assert error_schema(op, int(status)) == ERROR_REF, (method, path, status)


def test_what_each_operation_takes_decides_what_it_documents(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        listed = {int(s) for s in op["responses"]}
        where = f"{method.upper()} {path}"
        if op.get("security"):
            assert 401 in listed, where
        if op.get("x-roles"):
            assert 403 in listed, where
        if any(p["in"] == "path" for p in op.get("parameters", [])):
            assert 404 in listed, where
        if op.get("parameters") or op.get("requestBody"):
            assert 422 in listed, where
        if op.get("requestBody"):
            assert {413, 422} <= listed and op["x-max-body-bytes"] > 0, where


def test_every_operation_that_refuses_strangers_says_so(client: TestClient, document: dict[str, Any]) -> None:
    refusing = []
    for path, method, op in operations(document):
        answer = client.request(method, concrete(path))
        where = f"{method.upper()} {path}"
        if answer.status_code == 401:
            refusing.append(where)
            assert answer.json()["error"]["code"] in ("auth_required", "login_failed"), where
            assert 401 in {int(s) for s in op["responses"]}, f"{where} answers 401 but does not document it"
        if op.get("security"):
            assert answer.status_code == 401, f"{where} documents a credential it does not ask for"
    assert len(refusing) >= 40  # most of the API is for someone


def test_every_operation_with_roles_refuses_others_as_documented(
    client: TestClient, runtime: Runtime, document: dict[str, Any]
) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)["headers"]
    network = staff(runtime, Role.NETWORK, 1)[1]
    checked = 0
    for path, method, op in operations(document):
        roles = op.get("x-roles")
        if not roles:
            continue
        outsider = network if "network" not in roles else subscriber
        answer = client.request(method, concrete(path), headers=outsider)
        assert answer.status_code == 403, f"{method.upper()} {path} lets a {outsider} through: {answer.text}"
        assert answer.json()["error"]["code"] == "forbidden"
        checked += 1
    assert checked >= 20


def bounded_pattern(pattern: str) -> bool:
    """Anchored at both ends, with no unescaped * or +: it cannot match text of any length."""
    bare = re.sub(r"\\.", "", pattern)
    return bare.startswith("^") and bare.endswith("$") and not re.search(r"[*+]", bare)


def unbounded(schema: dict[str, Any], components: dict[str, Any], where: str, seen: frozenset[str]) -> list[str]:
    """Numbers without a maximum and texts without a length limit, in a request's schema."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen else unbounded(components[name], components, where, seen | {name})
    found = [
        p
        for key in ("anyOf", "oneOf", "allOf")
        for s in schema.get(key, [])
        for p in unbounded(s, components, where, seen)
    ]
    kind = schema.get("type")
    if kind == "integer" and "maximum" not in schema and "exclusiveMaximum" not in schema:
        found.append(f"{where}: integer without a maximum")
    if kind == "string" and not (
        "maxLength" in schema
        or "enum" in schema
        or "const" in schema
        or schema.get("format") in ("date", "date-time", "binary", "email")
        or "contentMediaType" in schema  # a file: its size is the edge's limit
        or bounded_pattern(schema.get("pattern", ""))
    ):
        found.append(f"{where}: text without a length limit")
    for name, sub in schema.get("properties", {}).items():
        found += unbounded(sub, components, f"{where}.{name}", seen)
    if isinstance(schema.get("additionalProperties"), dict):
        found += unbounded(schema["additionalProperties"], components, f"{where}.*", seen)
    if kind == "array":
        found += unbounded(schema.get("items", {}), components, f"{where}[]", seen)
    return found


def test_every_number_and_text_a_request_carries_is_bounded(document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    found = []
    for path, method, op in operations(document):
        where = f"{method.upper()} {path}"
        for parameter in op.get("parameters", []):
            found += unbounded(parameter["schema"], components, f"{where} {parameter['name']}", frozenset())
        for content in op.get("requestBody", {}).get("content", {}).values():
            found += unbounded(content["schema"], components, f"{where} body", frozenset())
    assert found == []
