"""Every route says which kinds of caller it is for — nobody signed in, a subscriber, staff, a
network element's key — and refuses the others. The matrix below is the one place that says who
may call what; a route missing from it, or letting in a kind it does not list, fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from duckline.accounts import service as accounts
from duckline.accounts.models import Account
from duckline.accounts.roles import Caller, Role
from duckline.runtime import Runtime
from duckline.web.deps import SESSION_COOKIE, Callers, csrf_token, session_signer
from tests.factories import numbers, register_and_verify, staff

A, S, F, N = Caller.ANONYMOUS, Caller.SUBSCRIBER, Caller.STAFF, Caller.NETWORK
ANYONE = frozenset({A, S, F, N})
SIGNED_IN = frozenset({S, F, N})
SUBSCRIBER = frozenset({S})
SUBSCRIBER_OR_STAFF = frozenset({S, F})
STAFF = frozenset({F})
NETWORK = frozenset({N})

MATRIX: dict[str, frozenset[Caller]] = {
    # The framework's own pages: the API documents itself to anyone.
    "GET /api/v1/openapi.json": ANYONE,
    "GET /api/v1/docs": ANYONE,
    "GET /api/v1/health": ANYONE,
    # Signing up and in.
    "POST /api/v1/registrations": ANYONE,
    "POST /api/v1/registrations/verify": ANYONE,
    "POST /api/v1/registrations/resend": ANYONE,
    "POST /api/v1/auth/login": ANYONE,
    "POST /api/v1/auth/tokens": ANYONE,
    "POST /api/v1/auth/password-reset": ANYONE,
    "POST /api/v1/auth/password-reset/confirm": ANYONE,
    "POST /api/v1/auth/logout": SIGNED_IN,
    "GET /api/v1/auth/session": SIGNED_IN,
    "GET /api/v1/demo/outbox": ANYONE,  # development mode only
    # The caller's own account.
    "GET /api/v1/me": SIGNED_IN,
    "PATCH /api/v1/me": SUBSCRIBER_OR_STAFF,  # the language pages and messages come in
    "GET /api/v1/me/identity": SUBSCRIBER,
    "PUT /api/v1/me/identity": SUBSCRIBER,
    "GET /api/v1/me/preferences": SUBSCRIBER,
    "PUT /api/v1/me/preferences": SUBSCRIBER,
    "POST /api/v1/me/email": SUBSCRIBER,
    "POST /api/v1/me/email/verify": SUBSCRIBER,
    "POST /api/v1/me/phone": SUBSCRIBER,
    "POST /api/v1/me/phone/verify": SUBSCRIBER,
    "POST /api/v1/me/reauthenticate": SUBSCRIBER,
    "POST /api/v1/me/reauthenticate/code": SUBSCRIBER,
    "POST /api/v1/me/password": SUBSCRIBER,
    "GET /api/v1/me/sessions": SUBSCRIBER,
    "DELETE /api/v1/me/sessions/{session_id}": SUBSCRIBER,
    "POST /api/v1/me/sessions/revoke-others": SUBSCRIBER,
    "GET /api/v1/me/payment-methods": SUBSCRIBER,
    "DELETE /api/v1/me/payment-methods/{method_id}": SUBSCRIBER,
    "POST /api/v1/me/data-export": SUBSCRIBER,
    "GET /api/v1/me/closure": SUBSCRIBER,
    "POST /api/v1/me/closure": SUBSCRIBER,
    # Support: subscribers ask, staff answer.
    "POST /api/v1/tickets": SUBSCRIBER,
    "GET /api/v1/tickets": SUBSCRIBER_OR_STAFF,
    "GET /api/v1/tickets/{ticket_id}": SUBSCRIBER_OR_STAFF,
    "POST /api/v1/tickets/{ticket_id}/messages": SUBSCRIBER_OR_STAFF,
    # Lines: the subscriber's own, any for staff.
    "GET /api/v1/lines": SUBSCRIBER_OR_STAFF,
    "POST /api/v1/lines": SUBSCRIBER,
    "GET /api/v1/lines/{line_id}/status": SUBSCRIBER_OR_STAFF,
    "GET /api/v1/lines/by-msisdn/{msisdn}/status": SUBSCRIBER_OR_STAFF,
    "GET /api/v1/lines/{line_id}/esim": SUBSCRIBER_OR_STAFF,
    "GET /api/v1/lines/{line_id}/esim/qr.{fmt}": SUBSCRIBER_OR_STAFF,
    "PATCH /api/v1/lines/{line_id}/features": SUBSCRIBER_OR_STAFF,
    "PATCH /api/v1/lines/{line_id}/auto-renew": SUBSCRIBER,  # it charges the subscriber's card
    "POST /api/v1/lines/{line_id}/activate": STAFF,
    "POST /api/v1/lines/{line_id}/report-lost": SUBSCRIBER,
    "POST /api/v1/lines/{line_id}/proof-code": SUBSCRIBER,
    "POST /api/v1/lines/{line_id}/resume": SUBSCRIBER_OR_STAFF,  # staff give a reason, the holder proof
    "POST /api/v1/lines/{line_id}/esim/move": SUBSCRIBER,
    "GET /api/v1/lines/{line_id}/sip": SUBSCRIBER_OR_STAFF,  # where the phone registers, no secret
    "POST /api/v1/lines/{line_id}/sip/password": SUBSCRIBER,  # the password is for the holder's eyes only
    "GET /api/v1/esim/profile": NETWORK,  # the SM-DP+ asks whether a profile is still the line's
    # The catalogue: anyone reads it, staff edit it.
    "GET /api/v1/plans": ANYONE,
    "GET /api/v1/plans/{code}": ANYONE,
    "POST /api/v1/plans": STAFF,
    "PUT /api/v1/plans/{code}": STAFF,
    "POST /api/v1/plans/{code}/retire": STAFF,
    "GET /api/v1/rating-groups": STAFF,
    "PUT /api/v1/rating-groups/{rating_group}": STAFF,
    "DELETE /api/v1/rating-groups/{rating_group}": STAFF,
    "GET /api/v1/charging/peers": STAFF,  # support and admin roles: tests/diameter/test_operators_view.py
    "GET /api/v1/charging/sessions": STAFF,
    "GET /api/v1/promotions/current": ANYONE,
    # What network elements are for.
    "POST /api/v1/usage/batches": NETWORK,
    # Operations.
    "POST /api/v1/numbers/import": STAFF,
    "GET /api/v1/numbers/summary": STAFF,
    "GET /api/v1/persons/{person_id}": STAFF,
    "GET /api/v1/persons/{person_id}/document": STAFF,
    "POST /api/v1/persons/{person_id}/kyc": STAFF,
    "GET /api/v1/audit": STAFF,
    "GET /api/v1/reconciliation/cases": STAFF,
    "POST /api/v1/reconciliation/cases/{ticket_id}/resolve": STAFF,
    "POST /api/v1/jobs/{name}": STAFF,
    "GET /api/v1/promotions": STAFF,
    "POST /api/v1/promotions": STAFF,
    "POST /api/v1/promotions/{promotion_id}/deactivate": STAFF,
    "POST /api/v1/webhook-subscriptions": STAFF,
    "GET /api/v1/webhook-subscriptions": STAFF,
    "GET /api/v1/webhook-subscriptions/{subscription_id}/deliveries": STAFF,
    "POST /api/v1/webhook-deliveries/{delivery_id}/replay": STAFF,
    "POST /api/v1/orders/{order_id}/refunds": STAFF,
    "GET /api/v1/reports/revenue": STAFF,
    # Renewing and paying: the subscriber pays; staff may look.
    "POST /api/v1/quotes": SUBSCRIBER,
    "POST /api/v1/orders": SUBSCRIBER,
    "GET /api/v1/orders": SUBSCRIBER_OR_STAFF,
    "GET /api/v1/orders/{order_id}": SUBSCRIBER_OR_STAFF,
    "POST /api/v1/orders/{order_id}/payments": SUBSCRIBER,
    "POST /api/v1/orders/{order_id}/cancel": SUBSCRIBER,
    "GET /api/v1/payments/{payment_id}/return": SUBSCRIBER,
    "GET /api/v1/receipts": SUBSCRIBER,
    "GET /api/v1/receipts/{receipt_id}": SUBSCRIBER_OR_STAFF,
    "GET /api/v1/receipts/{receipt_id}/pdf": SUBSCRIBER_OR_STAFF,
    "GET /api/v1/billing/months": SUBSCRIBER,
    # Payment providers: their webhooks (signed), the sandbox's hosted pages.
    "POST /api/v1/webhooks/{provider}": ANYONE,
    "GET /sandbox/checkout/{ref}": ANYONE,
    "POST /sandbox/checkout/{ref}": ANYONE,
    "GET /sandbox/checkout/{ref}/authenticate": ANYONE,
    "POST /sandbox/checkout/{ref}/authenticate": ANYONE,
    # The portal: the pages before signing in …
    "GET /login": ANYONE,
    "POST /login": ANYONE,
    "POST /logout": ANYONE,
    "POST /language": ANYONE,
    "GET /register": ANYONE,
    "POST /register": ANYONE,
    "GET /register/verify": ANYONE,
    "POST /register/verify": ANYONE,
    "GET /password-reset": ANYONE,
    "POST /password-reset": ANYONE,
    "GET /": SUBSCRIBER_OR_STAFF,  # staff are sent on to the console
    # … the subscriber's pages …
    "GET /lines/{line_id}": SUBSCRIBER,
    "GET /lines/{line_id}/usage": SUBSCRIBER,
    "GET /lines/{line_id}/report-lost": SUBSCRIBER,
    "POST /lines/{line_id}/report-lost": SUBSCRIBER,
    "GET /lines/{line_id}/resume": SUBSCRIBER,
    "POST /lines/{line_id}/resume": SUBSCRIBER,
    "GET /lines/{line_id}/esim/move": SUBSCRIBER,
    "POST /lines/{line_id}/esim/move": SUBSCRIBER,
    "POST /lines/{line_id}/sip/password": SUBSCRIBER,
    "GET /lines/{line_id}/renew": SUBSCRIBER,
    "POST /lines/{line_id}/renew": SUBSCRIBER,
    "GET /payments/{payment_id}/result": SUBSCRIBER,
    "GET /orders/{order_id}/result": SUBSCRIBER,
    "POST /orders/{order_id}/retry": SUBSCRIBER,
    "GET /orders/{order_id}/pay": SUBSCRIBER,
    "GET /orders/{order_id}/card": SUBSCRIBER,
    "GET /bills": SUBSCRIBER,
    "GET /bills/receipts/{receipt_id:int}.pdf": SUBSCRIBER,
    "GET /settings": SUBSCRIBER,
    "POST /settings/email": SUBSCRIBER,
    "POST /settings/phone": SUBSCRIBER,
    "POST /settings/email/verify": SUBSCRIBER,
    "POST /settings/phone/verify": SUBSCRIBER,
    "POST /settings/preferences": SUBSCRIBER,
    "POST /settings/lines/{line_id}/features": SUBSCRIBER,
    "POST /settings/lines/{line_id}/auto-renew": SUBSCRIBER,
    "GET /settings/security": SUBSCRIBER,
    "POST /settings/security/confirm": SUBSCRIBER,
    "POST /settings/security/code": SUBSCRIBER,
    "POST /settings/security/password": SUBSCRIBER,
    "POST /settings/security/sessions/{session_id}/revoke": SUBSCRIBER,
    "POST /settings/security/sessions/revoke-others": SUBSCRIBER,
    "GET /settings/payment-methods": SUBSCRIBER,
    "POST /settings/payment-methods/{method_id}/remove": SUBSCRIBER,
    "GET /settings/privacy": SUBSCRIBER,
    "POST /settings/privacy/export": SUBSCRIBER,
    "POST /settings/privacy/close": SUBSCRIBER,
    "GET /support": SUBSCRIBER,
    "POST /support": SUBSCRIBER,
    "GET /support/{ticket_id}": SUBSCRIBER,
    "POST /support/{ticket_id}/messages": SUBSCRIBER,
    # … and the staff console.
    "GET /console": STAFF,
    "GET /console/subscribers": STAFF,
    "GET /console/subscribers/{account_id}": STAFF,
    "POST /console/subscribers/{account_id}/kyc": STAFF,
    "POST /console/lines/{line_id}/resume": STAFF,
    "POST /console/orders/{order_id}/refund": STAFF,
    "GET /console/plans": STAFF,
    "GET /console/plans/new": STAFF,
    "GET /console/plans/{code}/edit": STAFF,
    "POST /console/plans": STAFF,
    "POST /console/plans/{plan_code}": STAFF,
    "GET /console/rating-groups": STAFF,
    "POST /console/rating-groups": STAFF,
    "POST /console/rating-groups/remove": STAFF,
    "POST /console/plans/{plan_code}/retire": STAFF,
    "GET /console/promotions": STAFF,
    "POST /console/promotions": STAFF,
    "POST /console/promotions/{promotion_id}/deactivate": STAFF,
    "GET /console/reconciliation": STAFF,
    "POST /console/reconciliation/{ticket_id}/resolve": STAFF,
    "POST /console/jobs/reconcile": STAFF,
    "GET /console/numbers": STAFF,
    "POST /console/numbers/import": STAFF,
    "GET /console/audit": STAFF,
    "GET /console/deliveries": STAFF,  # support and admin roles: tests/messaging/test_deliveries_console.py
    "GET /console/deliveries/{subject}/{subject_id}": STAFF,
    "GET /console/charging": STAFF,  # support and admin roles: tests/diameter/test_operators_view.py
    # The support desk (support and admin roles; the role check is tested in tests/support/test_support_desk.py).
    "GET /api/v1/desk/tickets": STAFF,
    "GET /api/v1/desk/tickets/{ticket_id}": STAFF,
    "POST /api/v1/desk/tickets/{ticket_id}/replies": STAFF,
    "POST /api/v1/desk/tickets/{ticket_id}/notes": STAFF,
    "PUT /api/v1/desk/tickets/{ticket_id}/assignee": STAFF,
    "POST /api/v1/desk/tickets/{ticket_id}/close": STAFF,
    "POST /api/v1/desk/tickets/{ticket_id}/links": STAFF,
    "DELETE /api/v1/desk/tickets/{ticket_id}/links/{link_id}": STAFF,
    "GET /console/support": STAFF,
    "GET /console/support/{ticket_id}": STAFF,
    "POST /console/support/{ticket_id}/reply": STAFF,
    "POST /console/support/{ticket_id}/note": STAFF,
    "POST /console/support/{ticket_id}/assign": STAFF,
    "POST /console/support/{ticket_id}/close": STAFF,
    "POST /console/support/{ticket_id}/links": STAFF,
    "POST /console/support/{ticket_id}/links/{link_id}/remove": STAFF,
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    route: Any  # the APIRoute, or the framework's own Route for the docs pages

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def url(self) -> str:
        """The path with every parameter filled with 1: enough to reach the route's checks."""
        return re.sub(r"\{[^}]+\}", "1", self.path)


def routes(app: FastAPI) -> Iterator[Route]:
    for context in iter_route_contexts(app.routes):
        for method in sorted((context.methods or set()) - {"HEAD"}):
            yield Route(method, str(context.path), context.original_route)


def declared(route: APIRoute) -> set[frozenset[Caller]]:
    """The kinds of caller the route's dependencies say it accepts."""
    found: set[frozenset[Caller]] = set()
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if isinstance(dependency.call, Callers):
            found.add(dependency.call.accepted)
        pending.extend(dependency.dependencies)
    return found


@pytest.fixture(scope="module")
def app_routes() -> list[Route]:
    from duckline.core.config import Settings
    from duckline.web.app import create_app

    return list(routes(create_app(Settings(environment="test", database_url="sqlite://"))))


def test_every_route_is_in_the_matrix(app_routes: list[Route]) -> None:
    keys = [r.key for r in app_routes]
    assert len(keys) == len(set(keys))
    assert sorted(set(keys) - set(MATRIX)) == [], "new routes: say in MATRIX which callers each is for"
    assert sorted(set(MATRIX) - set(keys)) == [], "routes gone: take them out of MATRIX"


def test_every_route_declares_the_callers_it_accepts(app_routes: list[Route]) -> None:
    """One declaration per route (a dependency from duckline.web.deps or the portal's session),
    and it says what the matrix says."""
    for route in app_routes:
        if not isinstance(route.route, APIRoute):
            assert MATRIX[route.key] == ANYONE, route.key  # the framework's documentation pages
            continue
        assert declared(route.route) == {MATRIX[route.key]}, route.key


def credentials(runtime: Runtime, account: Account | None) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and form fields for one call: a fresh token (a route may revoke it), sent both as
    the bearer token (the API) and in the session cookie (the portal), with the CSRF token."""
    if account is None:
        return {}, {}
    with runtime.unit_of_work() as uow:
        token = accounts.issue_token(uow, account, "matrix", None)
    cookie = session_signer(runtime).sign(token).decode()
    csrf = csrf_token(runtime, token)
    headers = {"Authorization": f"Bearer {token}", "Cookie": f"{SESSION_COOKIE}={cookie}", "X-CSRF-Token": csrf}
    return headers, {"csrf_token": csrf}


def refused(route: Route, response: Any) -> bool:
    """Turned away for who the caller is (not for what they sent)."""
    if route.path.startswith("/api/"):
        if response.status_code not in (401, 403):
            return False
        return bool(response.json()["error"]["code"] in ("auth_required", "forbidden"))
    if response.status_code == 303:
        return str(response.headers["location"]).startswith("/login?next=")
    return bool(response.status_code == 403 and response.text.startswith("403"))


def test_each_kind_of_caller_gets_in_only_where_the_matrix_says(
    client: TestClient, runtime: Runtime, app_routes: list[Route]
) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)
    callers: dict[Caller, Account | None] = {
        A: None,
        S: runtime_account(runtime, subscriber["account"]["id"]),
        F: staff(runtime, Role.ADMIN, 1)[0],
        N: staff(runtime, Role.NETWORK, 2)[0],
    }
    wrong: list[str] = []
    for route in app_routes:
        for caller, account in callers.items():
            headers, form = credentials(runtime, account)
            client.cookies.clear()
            if route.method == "GET":
                response = client.get(route.url(), headers=headers, follow_redirects=False)
            elif route.path.startswith("/api/"):
                response = client.request(route.method, route.url(), headers=headers, json={}, follow_redirects=False)
            else:
                response = client.request(route.method, route.url(), headers=headers, data=form, follow_redirects=False)
            if refused(route, response) == (caller in MATRIX[route.key]):
                wrong.append(f"{route.key} {caller.value}: {response.status_code} {response.text[:120]}")
    assert wrong == [], "\n".join(wrong)


def runtime_account(runtime: Runtime, account_id: int) -> Account:
    with runtime.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None
        return account
