"""The card page, with cards going through Stripe (the local fake of tests/provider_fakes.py and the
real `stripe` library): placing an order leads to it; it carries what Stripe.js needs in data-
attributes and is the one page whose Content-Security-Policy lets Stripe.js in; it belongs to the
order's owner; once the payment is no longer open it hands over to the result page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.roles import Role
from duckline.billing.models import Order, Payment
from duckline.billing.order_states import OrderStatus, PaymentStatus
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core.config import Settings
from duckline.runtime import Runtime
from duckline.web.csp import CSP
from tests.billing.test_renew_pages import field, login, submit_renewal, text
from tests.factories import numbers, plan_input, register_and_verify, staff
from tests.provider_fakes import STRIPE_PUBLISHABLE_KEY, FakeStripe, fake_stripe, stripe_settings

CARD_PAGE = re.compile(r"/orders/(\d+)/card\?payment=(\d+)")
STRIPE_SOURCES = {
    "script-src": ["https://js.stripe.com"],
    "frame-src": ["https://js.stripe.com", "https://hooks.stripe.com"],
    "connect-src": ["https://api.stripe.com"],
}


@pytest.fixture
def stripe() -> Iterator[FakeStripe]:
    with fake_stripe() as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, stripe: FakeStripe) -> Settings:
    """Cards through Stripe (the fake); Alipay and WeChat Pay stay on the sandbox."""
    return stripe_settings(settings, stripe)


@pytest.fixture
def world(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    """A subscriber with a new (pending) line and an HK$88 monthly plan to pay; logged in."""
    numbers(runtime, 5)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=8800))
    subscriber = register_and_verify(client, runtime, 1)
    login(client, subscriber["phone"])
    return {**subscriber, "line_id": subscriber["line"]["id"]}


def order_by_card(client: TestClient, world: dict[str, Any]) -> tuple[int, int, str]:
    """Renew from the portal, paying by card: (order id, payment id, the card page's URL)."""
    _, placed = submit_renewal(client, world["line_id"], "plan=monthly&method=card")
    assert placed.status_code == 303, placed.text
    found = CARD_PAGE.fullmatch(placed.headers["location"])
    assert found, placed.headers["location"]
    return int(found.group(1)), int(found.group(2)), placed.headers["location"]


def intent_of(runtime: Runtime, stripe: FakeStripe, payment_id: int) -> dict[str, Any]:
    with runtime.unit_of_work() as uow:
        payment = uow.session.get(Payment, payment_id)
        assert payment is not None and payment.provider_ref
        return stripe.intents[payment.provider_ref]


def data(page: str, name: str) -> str:
    found = re.search(rf'data-{name}="([^"]*)"', page)
    assert found, f"no data-{name}"
    return found.group(1)


def policy(response: httpx.Response) -> dict[str, list[str]]:
    header = response.headers["content-security-policy"]
    return {name: sources.split() for name, _, sources in (part.partition(" ") for part in header.split("; "))}


def pay_in_browser(stripe: FakeStripe, intent: dict[str, Any], payment_method: str) -> httpx.Response:
    """What Stripe.js does when the payer presses Pay: the confirm call, with the publishable key."""
    return httpx.post(
        f"{stripe.base}/v1/payment_intents/{intent['id']}/confirm",
        data={
            "key": STRIPE_PUBLISHABLE_KEY,
            "client_secret": intent["client_secret"],
            "payment_method": payment_method,
        },
        timeout=5,
    )


def test_an_order_by_card_leads_to_the_card_page(
    client: TestClient, runtime: Runtime, stripe: FakeStripe, world: dict[str, Any]
) -> None:
    order_id, payment_id, card_page = order_by_card(client, world)

    page = client.get(card_page)

    assert page.status_code == 200, page.text
    intent = intent_of(runtime, stripe, payment_id)
    assert intent["amount"] == 8800 and intent["currency"] == "hkd"
    assert data(page.text, "client-secret") == intent["client_secret"]
    assert data(page.text, "publishable-key") == STRIPE_PUBLISHABLE_KEY
    assert data(page.text, "return-url") == f"{runtime.settings.base_url}/payments/{payment_id}/result"
    assert data(page.text, "locale") == "en"
    assert page.headers["cache-control"] == "private, no-store"
    shown = text(page.text)
    assert "Pay by card" in shown and "HK$88.00" in shown and f"Order {order_id}" in shown
    assert re.search(r'<button type="submit" id="card-pay"[^>]*disabled>Pay HK\$88\.00</button>', page.text)
    assert 'id="payment-element"' in page.text and 'id="card-error" class="error" role="alert" hidden' in page.text
    assert f'href="/orders/{order_id}/result?payment={payment_id}"' in page.text  # the way back
    # Stripe.js from the configured URL, then our own script: no inline script anywhere.
    scripts = re.findall(r"<script([^>]*)>", page.text)
    assert [re.search(r'src="([^"]+)"', s).group(1) for s in scripts] == [  # type: ignore[union-attr]
        "/static/portal.js",
        f"{stripe.base}/v3/",
        "/static/stripe_pay.js",
    ]
    assert client.get("/static/stripe_pay.js").status_code == 200


def test_only_the_card_page_lets_stripe_js_in(
    client: TestClient, runtime: Runtime, stripe: FakeStripe, world: dict[str, Any]
) -> None:
    order_id, _, card_page = order_by_card(client, world)
    base = dict(part.split(" ", 1) for part in CSP.split("; "))

    card = policy(client.get(card_page))

    # Stripe's origins, and the stand-in's (the fake serves Stripe.js and the API in these tests).
    assert card["script-src"] == ["'self'", *STRIPE_SOURCES["script-src"], stripe.base]
    assert card["frame-src"] == ["'self'", *STRIPE_SOURCES["frame-src"], stripe.base]
    assert card["connect-src"] == ["'self'", *STRIPE_SOURCES["connect-src"], stripe.base]
    for name, sources in base.items():  # everything else as strict as on every page
        if name not in STRIPE_SOURCES:
            assert card[name] == sources.split(), name
    assert set(card) == set(base) | set(STRIPE_SOURCES)
    for path in ("/", f"/lines/{world['line_id']}/renew", f"/orders/{order_id}/result", "/bills"):
        other = client.get(path)
        assert other.status_code == 200, path
        header = other.headers["content-security-policy"]
        assert "stripe" not in header and stripe.base not in header, (path, header)
        assert policy(other)["script-src"] == ["'self'"], path


def test_the_result_page_leads_back_to_the_card_page(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    order_id, payment_id, card_page = order_by_card(client, world)

    waiting = client.get(f"/orders/{order_id}/result?payment={payment_id}")

    assert waiting.status_code == 200
    assert "Waiting for the payment to be confirmed" in text(waiting.text)
    assert f'<a href="{card_page}">Back to the payment page</a>' in waiting.text


def test_paid_in_the_browser_the_card_page_hands_over_to_the_result(
    client: TestClient, runtime: Runtime, stripe: FakeStripe, world: dict[str, Any]
) -> None:
    order_id, payment_id, card_page = order_by_card(client, world)
    intent = intent_of(runtime, stripe, payment_id)
    wrong_key = httpx.post(
        f"{stripe.base}/v1/payment_intents/{intent['id']}/confirm",
        data={
            "key": "pk_test_someone_else",
            "client_secret": intent["client_secret"],
            "payment_method": "pm_card_visa",
        },
    )
    assert wrong_key.status_code == 401 and intent["status"] == "requires_payment_method"

    assert pay_in_browser(stripe, intent, "pm_card_visa").status_code == 200
    again = client.get(card_page, follow_redirects=False)

    assert again.status_code == 303  # Stripe says it is paid: nothing left to do here
    assert again.headers["location"] == f"/orders/{order_id}/result?payment={payment_id}"
    # The return URL Stripe.js goes to, with Stripe's parameters, leads to the same result.
    returned = client.get(
        f"/payments/{payment_id}/result",
        params={
            "payment_intent": intent["id"],
            "payment_intent_client_secret": intent["client_secret"],
            "redirect_status": "succeeded",
        },
        follow_redirects=False,
    )
    assert returned.status_code == 303 and returned.headers["location"] == again.headers["location"]
    done = client.get(returned.headers["location"])
    assert "Done: your line is activated" in text(done.text) and "•••• 4242" in text(done.text)
    with runtime.unit_of_work() as uow:
        order = uow.session.get(Order, order_id)
        assert order is not None and order.status is OrderStatus.FULFILLED


def test_a_declined_card_then_a_retry_goes_to_a_new_card_page(
    client: TestClient, runtime: Runtime, stripe: FakeStripe, world: dict[str, Any]
) -> None:
    order_id, payment_id, card_page = order_by_card(client, world)
    declined = pay_in_browser(stripe, intent_of(runtime, stripe, payment_id), "pm_card_chargeDeclined")
    assert declined.status_code == 402 and declined.json()["error"]["message"] == "Your card was declined."

    moved_on = client.get(card_page, follow_redirects=False)
    assert moved_on.status_code == 303
    failed = client.get(moved_on.headers["location"])
    assert "The payment did not go through" in text(failed.text)
    retried = client.post(
        f"/orders/{order_id}/retry",
        data={"csrf_token": field(failed.text, "csrf_token", -1), "attempt": str(payment_id), "method": "card"},
        follow_redirects=False,
    )

    assert retried.status_code == 303
    found = CARD_PAGE.fullmatch(retried.headers["location"])
    assert found and int(found.group(1)) == order_id and int(found.group(2)) != payment_id
    new_page = client.get(retried.headers["location"])
    new_intent = intent_of(runtime, stripe, int(found.group(2)))
    assert (
        data(new_page.text, "client-secret")
        == new_intent["client_secret"]
        != declined.json()["error"]["payment_intent"]["client_secret"]
    )
    with runtime.unit_of_work() as uow:
        first = uow.session.get(Payment, payment_id)
        assert first is not None and first.status is PaymentStatus.FAILED


def test_someone_elses_order_is_not_found(
    client: TestClient, runtime: Runtime, stripe: FakeStripe, world: dict[str, Any]
) -> None:
    order_id, payment_id, card_page = order_by_card(client, world)
    mine = intent_of(runtime, stripe, payment_id)["client_secret"]
    other = register_and_verify(client, runtime, 2)
    with TestClient(client.app, base_url="http://127.0.0.1") as theirs:
        login(theirs, other["phone"])

        page = theirs.get(card_page)

        assert page.status_code == 404 and "Not found." in text(page.text)
        assert mine not in page.text
        assert "stripe" not in page.headers["content-security-policy"]
        # Their own order with my payment's id: their own attempt, never mine.
        _, their_placed = submit_renewal(theirs, other["line"]["id"], "plan=monthly&method=card")
        their_link = CARD_PAGE.fullmatch(their_placed.headers["location"])
        assert their_link is not None
        their_order, their_payment = int(their_link.group(1)), int(their_link.group(2))
        crossed = theirs.get(f"/orders/{their_order}/card?payment={payment_id}")
        assert crossed.status_code == 200
        assert data(crossed.text, "client-secret") == intent_of(runtime, stripe, their_payment)["client_secret"]
        assert mine not in crossed.text
    assert client.get(f"/orders/{order_id + 1000}/card?payment={payment_id}").status_code == 404


def test_an_attempt_that_is_not_for_this_page_goes_to_the_result(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    """A wallet's attempt (here Alipay, on the sandbox's hosted page) has no card page."""
    _, placed = submit_renewal(client, world["line_id"], "plan=monthly&method=alipay")
    assert placed.status_code == 303 and "/sandbox/checkout/" in placed.headers["location"]
    with runtime.unit_of_work() as uow:
        payment = uow.session.scalars(select(Payment).order_by(Payment.id.desc())).first()
        assert payment is not None
        order_id, payment_id = payment.order_id, payment.id

    page = client.get(f"/orders/{order_id}/card?payment={payment_id}", follow_redirects=False)

    assert page.status_code == 303
    assert page.headers["location"] == f"/orders/{order_id}/result?payment={payment_id}"


def test_the_card_page_needs_a_login(client: TestClient, world: dict[str, Any]) -> None:
    _, _, card_page = order_by_card(client, world)
    client.cookies.clear()

    page = client.get(card_page, follow_redirects=False)

    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")


def test_stripe_needs_its_publishable_key(settings: Settings) -> None:
    with pytest.raises(ValueError, match="DUCKLINE_STRIPE_PUBLISHABLE_KEY"):
        Settings(**{**settings.model_dump(), "stripe_publishable_key": ""})


def test_the_card_page_in_chinese(client: TestClient, world: dict[str, Any]) -> None:
    _, _, card_page = order_by_card(client, world)
    for language, locale, title in (("zh_Hant", "zh-HK", "以信用卡付款"), ("zh_Hans", "zh", "使用银行卡支付")):
        home = client.get("/")
        client.post(
            "/language",
            data={"language": language, "csrf_token": field(home.text, "csrf_token"), "next": "/"},
            follow_redirects=False,
        )

        page = client.get(card_page)

        assert page.status_code == 200
        assert data(page.text, "locale") == locale  # the Payment Element speaks the page's language
        assert f'<h1 id="card-heading">{title}</h1>' in page.text
