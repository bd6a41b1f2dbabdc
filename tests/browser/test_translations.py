"""Every main page of the portal and the console, crawled in English, 繁體中文 and 简体中文 with
the renderer recording each message id it had no translation for. In-process (TestClient): the
pages are the same, the browser adds nothing to what gettext finds."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.billing.models import Order, Receipt
from duckline.core import i18n, jobs
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.lines.models import Line
from duckline.runtime import Runtime
from duckline.staff import demo
from duckline.support import conversations as support
from duckline.support.models import Ticket
from duckline.web.portal import rendering
from duckline.web.portal.rendering import LANGUAGE_COOKIE
from tests.app_pool import pooled_app
from tests.factories import buy, deliver, idem, pay_on_sandbox, place_order
from tests.provider_fakes import fake_stripe, sandbox_event, sandbox_ref, stripe_settings

PASSWORD = demo.DEMO_PASSWORD
SUBSCRIBER = "+85291234567"  # 陳大文, Voice Plus 30
ADMIN = "+85251000001"
LANGUAGES = ("en", "zh_Hant", "zh_Hans")


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', page)
    assert found, "no CSRF field"
    return html.unescape(found.group(1))


def portal_login(client: TestClient, phone: str) -> None:
    page = client.get("/login")
    done = client.post(
        "/login",
        data={"phone": phone, "password": PASSWORD, "csrf_token": csrf_of(page.text), "next": "/"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text


def switch(client: TestClient, language: str, where: str) -> None:
    """The header's language form, as the browser posts it."""
    page = client.get(where)
    switched = client.post(
        "/language",
        data={"language": language, "csrf_token": csrf_of(page.text), "next": where},
        follow_redirects=False,
    )
    assert switched.status_code == 303


@pytest.fixture
def world(client: TestClient, runtime: Runtime, clock: FrozenClock) -> Iterator[dict[str, Any]]:
    """The demo world plus what makes every page show its parts: a renewal paid (receipt, bills,
    success result), a declined attempt (failure result), a support ticket, and an open and a
    resolved reconciliation case."""
    with runtime.unit_of_work() as uow:
        demo.load(uow)
        account = uow.session.scalars(select(Account).where(Account.phone == SUBSCRIBER)).one()
        line = uow.session.scalars(select(Line).where(Line.account_id == account.id)).one()
        support.open_ticket(uow, account, "漫遊數據", "去深圳時數據用不到，請幫忙。")
    token = client.post("/api/v1/auth/tokens", json={"phone": SUBSCRIBER, "password": PASSWORD}).json()["token"]
    subscriber = {"line": {"id": line.id}, "headers": {"Authorization": f"Bearer {token}"}}
    paid = buy(client, runtime, clock, subscriber, "hk-voice-30")
    declined = place_order(client, subscriber, "addon-data-5gb").json()
    assert pay_on_sandbox(client, declined, card="4000000000000002").status_code == 303
    deliver(runtime, client, clock)
    lost = place_order(client, subscriber, "addon-data-5gb").json()  # paid, its webhook lost: applied by the job
    assert pay_on_sandbox(client, lost, card="4000000000000077").status_code == 303
    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes + 1))
    jobs.run(runtime, "reconcile")
    mismatch = place_order(client, subscriber, "hk-voice-30").json()  # a capture of the wrong amount
    body, headers = sandbox_event(runtime, "payment.succeeded", sandbox_ref(mismatch), "succeeded", 100)
    assert client.post("/api/v1/webhooks/sandbox", content=body, headers=headers).status_code == 200
    with runtime.unit_of_work() as uow:
        ticket_id = uow.session.scalars(select(Ticket.id).where(Ticket.kind == "subscriber")).one()
        receipt_id = uow.session.scalars(select(Receipt.id).where(Receipt.order_id == paid["id"])).one()
        assert uow.session.scalars(select(Ticket.id).where(Ticket.status == "open", Ticket.kind != "subscriber")).all()
        failed = uow.session.get(Order, declined["id"])
        assert failed is not None and failed.status.value == "failed"
    yield {
        "account_id": account.id,
        "line_id": line.id,
        "paid": paid["id"],
        "failed": declined["id"],
        "ticket": ticket_id,
        "receipt": receipt_id,
    }


ANONYMOUS_PAGES = ("/login", "/register", "/register/verify?phone=%2B85261000001", "/password-reset")
SUBSCRIBER_PAGES = (
    "/",  # the dashboard: the lines and what is left
    "/lines/{line_id}",
    "/lines/{line_id}/usage",
    "/lines/{line_id}/renew",
    "/lines/{line_id}/renew?plan=hk-data-30&method=card",  # the exact price, a plan change, a bonus
    "/lines/{line_id}/renew?plan=hk-voice-30&promo=NOPE&method=alipay",  # a field error
    "/orders/{paid}/result",
    "/orders/{failed}/result",
    "/bills",
    "/settings",
    "/settings/security",
    "/settings/payment-methods",
    "/settings/privacy",
    "/support",
    "/support/{ticket}",
)
CONSOLE_PAGES = (
    "/console",
    "/console/subscribers?q=chan",
    "/console/subscribers/{account_id}",
    "/console/reconciliation",
    "/console/plans",
    "/console/plans/new",
    "/console/plans/hk-voice-30/edit",
    "/console/promotions",
    "/console/numbers",
    "/console/audit",
)


def test_every_main_page_is_translated(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> None:
    subscriber = TestClient(client.app, base_url="http://127.0.0.1")
    staff = TestClient(client.app, base_url="http://127.0.0.1")
    portal_login(subscriber, SUBSCRIBER)
    portal_login(staff, ADMIN)
    missing: set[tuple[str, str]] = set()
    wrong_language: list[tuple[str, str]] = []
    crawled: dict[str, list[str]] = {language: [] for language in LANGUAGES}
    before = rendering.missing_translations
    rendering.missing_translations = missing
    try:
        for language in LANGUAGES:
            anonymous = TestClient(client.app, base_url="http://127.0.0.1", cookies={LANGUAGE_COOKIE: language})
            switch(subscriber, language, "/settings")
            switch(staff, language, "/console")
            for who, paths in ((anonymous, ANONYMOUS_PAGES), (subscriber, SUBSCRIBER_PAGES), (staff, CONSOLE_PAGES)):
                for template in paths:
                    path = template.format(**world)
                    page = who.get(path)
                    expected = 422 if "promo=NOPE" in path else 200
                    assert page.status_code == expected, (language, path, page.status_code, page.text[:500])
                    if f'<html lang="{rendering.HTML_LANG[language]}">' not in page.text:
                        wrong_language.append((language, path))
                    crawled[language].append(path)
        # The recorder hears an untranslated id when there is one.
        rendering.gettext_for("zh_Hans")("A sentence nobody has translated")
        assert ("zh_Hans", "A sentence nobody has translated") in missing
        missing.discard(("zh_Hans", "A sentence nobody has translated"))
    finally:
        rendering.missing_translations = before

    assert not wrong_language, wrong_language
    assert all(len(paths) == len(ANONYMOUS_PAGES + SUBSCRIBER_PAGES + CONSOLE_PAGES) for paths in crawled.values())
    assert not missing, "untranslated message ids:\n" + "\n".join(
        f"{language}: {message!r}" for language, message in sorted(missing)
    )
    assert i18n.gettext("zh_Hant", "Bills") != "Bills"  # the catalogues are really loaded


def test_the_card_payment_page_is_translated(settings: Settings, clock: FrozenClock) -> None:
    """The card page (and the result page leading back to it) exists only when cards go through
    Stripe: crawled with the fake Stripe, in the three languages, like the pages above."""
    missing: set[tuple[str, str]] = set()
    with fake_stripe() as stripe:
        runtime = Runtime(stripe_settings(settings, stripe), clock=clock)
        try:
            with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1") as client:
                with runtime.unit_of_work() as uow:
                    demo.load(uow)
                portal_login(client, SUBSCRIBER)
                token = client.post("/api/v1/auth/tokens", json={"phone": SUBSCRIBER, "password": PASSWORD})
                headers = {"Authorization": f"Bearer {token.json()['token']}", **idem()}
                line_id = client.get("/api/v1/lines", headers=headers).json()["items"][0]["id"]
                body = {"line_id": line_id, "plan_code": "hk-voice-30", "payment_method": "card"}
                order = client.post("/api/v1/orders", json=body, headers=headers).json()
                payment = order["payments"][-1]
                assert payment["next_action"]["type"] == "stripe_client_secret", order
                paths = (f"/orders/{order['id']}/card?payment={payment['id']}", f"/orders/{order['id']}/result")
                before = rendering.missing_translations
                rendering.missing_translations = missing
                try:
                    for language in LANGUAGES:
                        switch(client, language, "/settings")
                        for path in paths:
                            page = client.get(path)
                            assert page.status_code == 200, (language, path, page.text[:500])
                            assert f'<html lang="{rendering.HTML_LANG[language]}">' in page.text, (language, path)
                        assert f'href="{paths[0]}"' in page.text  # the result page leads back to the card page
                finally:
                    rendering.missing_translations = before
        finally:
            runtime.close()

    assert not missing, "untranslated message ids:\n" + "\n".join(
        f"{language}: {message!r}" for language, message in sorted(missing)
    )
