"""Paying by card through Stripe in a real browser (Chromium), on SQLite and on PostgreSQL. Stripe.js
cannot be reached from the tests: the card page loads a stand-in (tests/stripe_js_standin.js) from
the fake Stripe on loopback (DUCKLINE_STRIPE_JS_URL), which confirms the PaymentIntent against the
fake's API as Stripe.js confirms against api.stripe.com. What is under test is ours: the page, its
script (duckline/web/static/stripe_pay.js), its Content-Security-Policy, the return URL and the
result page after it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import ConsoleMessage, Page
from sqlalchemy import select

from duckline.billing.models import Order, Payment, Receipt
from duckline.billing.order_states import OrderStatus
from duckline.core.config import Settings
from tests.browser.conftest import SUBSCRIBER_EN, Live, choose_and_quote, log_in, screenshot
from tests.browser.test_journeys import CSP_MESSAGE, RECEIPT_NUMBER
from tests.provider_fakes import STRIPE_PUBLISHABLE_KEY, FakeStripe, fake_stripe, stripe_settings


@pytest.fixture
def stripe() -> Iterator[FakeStripe]:
    with fake_stripe() as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, stripe: FakeStripe) -> Settings:
    """The live server's settings with cards going through Stripe (the fake and its Stripe.js)."""
    return stripe_settings(settings, stripe)


def test_pay_by_card_on_the_card_page(page: Page, live: Live, stripe: FakeStripe) -> None:
    base, runtime = live
    violations: list[str] = []
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if CSP_MESSAGE.search(message.text):
            violations.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    log_in(page, base, SUBSCRIBER_EN)
    with page.expect_navigation(url=re.compile(r"/lines/\d+$")):
        page.click("main a.button[href^='/lines/']:not([href$='/renew'])")
    choose_and_quote(page)
    total = page.inner_text("#quote tfoot")

    with page.expect_navigation(url=re.compile(r"/orders/\d+/card\?payment=\d+$")):
        page.click("#quote form button[type=submit]")

    order_id = int(re.search(r"/orders/(\d+)/card", page.url).group(1))  # type: ignore[union-attr]
    assert page.inner_text("main h1") == "Pay by card"
    assert page.inner_text("main .card-pay .big") in total
    card_number = page.locator("#payment-element #stand-in-card-number")  # mounted by "Stripe.js"
    card_number.wait_for()
    assert page.is_enabled("#card-pay")
    assert page.get_attribute("#card-form", "data-publishable-key") == STRIPE_PUBLISHABLE_KEY

    # A declined card: Stripe's message on the page, the payer stays to try another card.
    card_number.fill("4000 0000 0000 0002")
    page.click("#card-pay")
    error = page.locator("#card-error")
    error.wait_for(state="visible")
    assert error.inner_text() == "Your card was declined."
    assert "/card?payment=" in page.url and page.is_enabled("#card-pay")
    screenshot(page, "card-declined", "desktop", "en")  # for people to look at (test-artifacts/)

    card_number.fill("4242 4242 4242 4242")
    with page.expect_navigation(url=re.compile(rf"/orders/{order_id}/result\?payment=\d+$")):
        page.click("#card-pay")

    success = page.locator("section.result.success")
    assert success.is_visible(), page.inner_text("main")
    assert page.inner_text("#result-heading") == "Done: your line is renewed"
    assert RECEIPT_NUMBER.fullmatch(page.inner_text(".receipt-number"))
    assert "•••• 4242" in page.inner_text("#order-heading + dl")
    with runtime.unit_of_work() as uow:
        order = uow.session.get(Order, order_id)
        assert order is not None and order.status is OrderStatus.FULFILLED
        [payment] = uow.session.scalars(select(Payment).where(Payment.order_id == order_id)).all()
        assert payment.card_last4 == "4242"
        intent_id = payment.provider_ref
        assert uow.session.scalars(select(Receipt).where(Receipt.order_id == order_id)).one()
    # Both tries were the browser's, on the one intent: publishable key and client secret only.
    confirms = stripe.calls("POST", f"/v1/payment_intents/{intent_id}/confirm")
    assert [c.params["payment_method"] for c in confirms] == ["pm_card_chargeDeclined", "pm_card_visa"]
    assert all(c.params["key"] == STRIPE_PUBLISHABLE_KEY for c in confirms)
    assert all(c.params["client_secret"] == stripe.intents[intent_id]["client_secret"] for c in confirms)
    assert not violations, "\n".join(violations)
    assert not errors, "\n".join(errors)


def test_the_card_page_still_refuses_inline_scripts(page: Page, live: Live, stripe: FakeStripe) -> None:
    """Letting Stripe.js in opens nothing else: an inline script is still refused there."""
    base, _ = live
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if CSP_MESSAGE.search(m.text) else None)
    log_in(page, base, SUBSCRIBER_EN)
    with page.expect_navigation(url=re.compile(r"/lines/\d+$")):
        page.click("main a.button[href^='/lines/']:not([href$='/renew'])")
    choose_and_quote(page)
    with page.expect_navigation(url=re.compile(r"/orders/\d+/card\?payment=\d+$")):
        page.click("#quote form button[type=submit]")
    page.locator("#stand-in-card-number").wait_for()
    assert not violations, violations

    page.evaluate("() => { const s = document.createElement('script'); s.textContent = '1'; document.head.append(s); }")
    page.wait_for_timeout(200)

    assert any("inline" in v.lower() or "refused" in v.lower() for v in violations), violations
