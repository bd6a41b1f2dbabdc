"""Browser tests: Debian's Chromium, driven by Playwright, against the real app served by uvicorn
on loopback (a thread of the test process), on SQLite and on PostgreSQL like every database test.

- `browser`: one headless Chromium for the session. Playwright's own browser download is not
  used: CI installs Debian's `chromium`; without /usr/bin/chromium the browser tests are skipped
  with the reason printed.
- `live`: the app on 127.0.0.1 and a free port, with `base_url` set to that address (the sandbox
  provider builds its hosted page's and its webhooks' URLs from it), the test's FrozenClock, no
  background worker, and the demo world loaded through the services (`staff.demo.load`: the
  catalogue, promotions, a number pool, admin/support/finance staff, three subscribers with usage).
- Helpers the tests share: log in through the form, switch language with the header switcher,
  pay on the sandbox's hosted page, deliver the sandbox's webhooks to the live server, take a
  screenshot named <page>-<viewport>-<language>.png under test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from duckline.billing.providers.sandbox import SIGNATURE_HEADER
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.core.signing import sign
from duckline.runtime import Runtime
from duckline.staff import demo
from tests.app_pool import pooled_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
FAILURES = ARTIFACTS / "failures"
VIEWPORTS: dict[str, dict[str, Any]] = {
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
    "desktop": {"viewport": {"width": 1280, "height": 900}},
}
TIMEOUT_MS = 15_000

# The demo world (duckline/staff/demo.py): who logs in with what.
PASSWORD = demo.DEMO_PASSWORD
ADMIN, SUPPORT, FINANCE = (phone for phone, _ in demo.STAFF)
SUBSCRIBER_EN = "+85261234567"  # passport holder, Data Max 30, 95 % used
SUBSCRIBER_HANT = "+85291234567"  # 陳大文, Voice Plus 30, 80 % used

GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
LOST_WEBHOOK_CARD = "4000 0000 0000 0077"


class Live(NamedTuple):
    base_url: str
    runtime: Runtime


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (CI installs Debian's chromium package)")
    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    launched = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


def new_context(browser: Browser, viewport: str = "desktop", **options: Any) -> BrowserContext:
    context = browser.new_context(**VIEWPORTS[viewport], accept_downloads=True, **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A desktop-sized page in a context (cookies) of its own. When the test fails, what the
    page showed is kept in test-artifacts/failures/<test>.png."""
    context = new_context(browser)
    opened = context.new_page()
    yield opened
    if request.node.stash.get(FAILED, False) and not opened.is_closed():
        FAILURES.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        opened.screenshot(path=str(FAILURES / f"{name}.png"), full_page=True)
    context.close()


# --- the live server ----------------------------------------------------------------------------


@pytest.fixture
def live(settings: Settings, clock: FrozenClock) -> Iterator[Live]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # uvicorn serves on this very socket: no port race
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    runtime = Runtime(settings.model_copy(update={"base_url": base_url, "worker_in_process": False}), clock=clock)
    with runtime.unit_of_work() as uow:
        demo.load(uow)
    with pooled_app(runtime) as app:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        try:
            yield Live(base_url, runtime)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            listener.close()
            runtime.close()


def deliver_webhooks(live: Live, clock: FrozenClock) -> int:
    """Let the sandbox's webhook delay pass and post what is due to the live server, as the
    provider would (each one twice). Returns the number of posts made."""
    clock.advance(timedelta(seconds=5))
    assert live.runtime.sandbox is not None
    with httpx.Client(timeout=10) as http:

        def post(url: str, body: bytes, headers: dict[str, str]) -> int:
            assert url.startswith(live.base_url), url
            return http.post(url, content=body, headers=headers).status_code

        return live.runtime.sandbox.deliver_due(post)


# --- what a person does in the browser ----------------------------------------------------------


def log_in(page: Page, base_url: str, phone: str, password: str = PASSWORD) -> None:
    """Through the login form; lands on / (subscribers) or /console (staff)."""
    page.goto(f"{base_url}/login")
    page.fill("#phone", phone)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("main form[action='/login'] button[type=submit]")
    assert "/login" not in page.url, page.inner_text("main")


def log_out(page: Page) -> None:
    with page.expect_navigation():
        page.click("form[action='/logout'] button")


def switch_language(page: Page, language: str) -> None:
    """With the header's switcher: the same page again, in `language` (kept on the account)."""
    page.select_option("#language-select", language)
    with page.expect_navigation():
        page.click("form.language button[type=submit]")
    expected = {"en": "en", "zh_Hant": "zh-Hant-HK", "zh_Hans": "zh-Hans"}[language]
    assert page.get_attribute("html", "lang") == expected


def pay_on_sandbox(page: Page, card: str) -> None:
    """The payer is on the sandbox's hosted page: type the card and pay; the provider sends the
    browser back to Duckline (its return URL, then the order's result page)."""
    assert "/sandbox/checkout/" in page.url, page.url
    page.fill("#card", card)
    with page.expect_navigation(url=re.compile(r"/orders/\d+/result")):
        page.click("main form button[type=submit]")


def choose_and_quote(page: Page, plan_code: str | None = None) -> None:
    """From a line's page: Renew (or Choose a plan), pick the plan (else the one ticked on
    arrival: the same plan again) and the card, and ask for the exact price."""
    with page.expect_navigation(url=re.compile(r"/lines/\d+/renew")):
        page.click("main a.button[href$='/renew']")
    if plan_code:
        page.check(f"#plan-{plan_code}")
    page.check("#method-card")
    with page.expect_navigation():
        page.click("form.renew-form button[type=submit]")
    assert page.locator("#quote").is_visible(), page.inner_text("main")


def pay_the_quote(page: Page) -> None:
    """The quote's Pay button: on to the sandbox's hosted page."""
    with page.expect_navigation(url=re.compile(r"/sandbox/checkout/")):
        page.click("#quote form button[type=submit]")


def renew_with_card(page: Page, plan_code: str | None = None) -> None:
    """From a line's page to the sandbox's hosted page, paying by card."""
    choose_and_quote(page, plan_code)
    pay_the_quote(page)


def headings(page: Page) -> list[str]:
    return [" ".join(text.split()) for text in page.locator("main :is(h1, h2, h3, legend)").all_inner_texts()]


def screenshot(page: Page, name: str, viewport: str, language: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{viewport}-{language}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --- the same through the API, for what the test only needs to exist --------------------------


@contextmanager
def api_client(live: Live, phone: str, password: str = PASSWORD) -> Iterator[httpx.Client]:
    """An API client with the subscriber's bearer token."""
    with httpx.Client(base_url=live.base_url, timeout=10) as http:
        token = http.post("/api/v1/auth/tokens", json={"phone": phone, "password": password})
        assert token.status_code == 201, token.text
        http.headers["Authorization"] = f"Bearer {token.json()['token']}"
        yield http


def api_order(http: httpx.Client, plan_code: str, card: str | None = None) -> dict[str, Any]:
    """Order `plan_code` for the caller's first line (card, sandbox); with `card`, pay it on the
    sandbox's hosted page and close the tab (the return URL is never visited)."""
    line_id = http.get("/api/v1/lines").json()["items"][0]["id"]
    body = {"line_id": line_id, "plan_code": plan_code, "payment_method": "card"}
    created = http.post("/api/v1/orders", json=body, headers={"Idempotency-Key": f"browser-{time.monotonic_ns()}"})
    assert created.status_code == 201, created.text
    order: dict[str, Any] = created.json()
    if card is not None:
        hosted = order["payments"][-1]["next_action"]["url"]
        paid = http.post(hosted, data={"card_number": card}, follow_redirects=False)
        assert paid.status_code == 303, paid.text
    return order


def mismatched_capture(live: Live, order: dict[str, object], amount: int) -> httpx.Response:
    """The provider says it captured `amount` (not the order's total): a signed sandbox webhook."""
    payments = order["payments"]
    assert isinstance(payments, list)
    ref = urlsplit(payments[-1]["next_action"]["url"]).path.rsplit("/", 1)[-1]
    now = int(live.runtime.clock.now().timestamp())
    body = json.dumps(
        {
            "id": f"evt_{secrets.token_hex(10)}",
            "type": "payment.succeeded",
            "created": now,
            "data": {
                "ref": ref,
                "status": "succeeded",
                "amount": amount,
                "currency": "HKD",
                "refunded": 0,
                "brand": "visa",
                "last4": "4242",
                "saved_token": None,
                "failure_code": None,
            },
        }
    ).encode()
    signature = sign(live.runtime.settings.sandbox_webhook_secret, body, now)
    headers = {"content-type": "application/json", SIGNATURE_HEADER: signature}
    return httpx.post(f"{live.base_url}/api/v1/webhooks/sandbox", content=body, headers=headers, timeout=10)
