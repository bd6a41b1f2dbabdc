"""Every HTML form of the portal, the console and the sandbox's hosted page refuses a NUL character
in any of its fields (422 validation_failed naming it) instead of failing with a 500 when the
database meets it: the forms are found from the routes, so a new form is covered too."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from duckline.accounts import service as accounts
from duckline.accounts.roles import Role
from duckline.runtime import Runtime
from duckline.web.deps import SESSION_COOKIE, csrf_token, session_signer
from tests.factories import PNG, staff

NUL = "\x00"


def forms(app: Any) -> list[tuple[str, str, list[str], list[str]]]:
    """(method, path, text fields, file fields) of every route outside the API that takes a form."""
    found = []
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or route.path_format.startswith("/api/"):
            continue
        fields = [(p.alias, "UploadFile" in str(p.field_info.annotation)) for p in route.dependant.body_params]
        if not fields:
            continue
        for method in sorted(route.methods):
            path = route.path_format
            found.append(
                (method, path, [f for f, is_file in fields if not is_file], [f for f, is_file in fields if is_file])
            )
    return found


def test_the_portal_has_forms_to_check(client: TestClient) -> None:
    assert len(forms(client.app)) >= 20


@pytest.mark.parametrize("who", ["visitor", "admin"])
def test_nul_in_any_portal_form_field_is_refused_not_a_500(client: TestClient, runtime: Runtime, who: str) -> None:
    with TestClient(client.app, base_url="http://127.0.0.1", raise_server_exceptions=False) as browser:
        headers: dict[str, str] = {}
        if who == "admin":  # signed in, with a valid CSRF token: nothing but the NUL is wrong
            account, _ = staff(runtime, Role.ADMIN, 1)
            with runtime.unit_of_work() as uow:
                token = accounts.issue_token(uow, account, "session", None)
            browser.cookies.set(SESSION_COOKIE, session_signer(runtime).sign(token).decode())
            headers = {"X-CSRF-Token": csrf_token(runtime, token)}
        checked = 0
        for method, path, texts, files in forms(client.app):
            url = "/".join("1" if "{" in part else part for part in path.split("/"))  # any id or code
            for field in texts:
                data = {name: ("x" + NUL if name == field else "1") for name in texts}
                upload = {name: ("id.png", PNG, "image/png") for name in files}
                response = browser.request(method, url, data=data, files=upload or None, headers=headers)
                where = f"{method} {path} {field}"
                assert response.status_code == 422, f"{where}: {response.status_code} {response.text[:200]}"
                error = response.json()["error"]
                assert (error["code"], error["field"]) == ("validation_failed", field), where
                checked += 1
        assert checked >= 40


@pytest.mark.parametrize("value", ["1", "", "9" * 30, "x"])
def test_no_portal_form_answers_500_to_odd_values(client: TestClient, runtime: Runtime, value: str) -> None:
    """The same forms with every field set to one odd value, signed in as an admin: refused or
    taken, never a 500 (e.g. the sandbox's page posted for a payment it does not have)."""
    with TestClient(client.app, base_url="http://127.0.0.1", raise_server_exceptions=False) as browser:
        account, _ = staff(runtime, Role.ADMIN, 1)
        with runtime.unit_of_work() as uow:
            token = accounts.issue_token(uow, account, "session", None)
        browser.cookies.set(SESSION_COOKIE, session_signer(runtime).sign(token).decode())
        headers = {"X-CSRF-Token": csrf_token(runtime, token)}
        for method, path, texts, files in forms(client.app):
            if path in ("/logout",):
                continue  # it would end the session the other forms need
            url = "/".join(value or "1" if "{" in part else part for part in path.split("/"))
            upload = {name: ("id.png", PNG, "image/png") for name in files}
            data = {name: value for name in texts} | (
                {"csrf_token": headers["X-CSRF-Token"]} if "csrf_token" in texts else {}
            )
            response = browser.request(
                method, url, data=data, files=upload or None, headers=headers, follow_redirects=False
            )
            assert response.status_code < 500, f"{method} {url}: {response.status_code} {response.text[:200]}"
