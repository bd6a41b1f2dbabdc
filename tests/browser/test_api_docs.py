"""The API docs page in a browser with no internet: every request to a host other than loopback
is refused, and Swagger UI still renders the operations, with no CSP violation."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Page, Route

from tests.browser.conftest import TIMEOUT_MS, Live


def test_the_docs_render_offline_under_our_csp(page: Page, live: Live) -> None:
    refused: list[str] = []

    def offline(route: Route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    console: list[str] = []

    def note(message: ConsoleMessage) -> None:
        console.append(message.text)

    page.route("**/*", offline)
    page.on("console", note)
    page.goto(f"{live.base_url}/api/v1/docs")

    page.locator(".opblock").first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator(".opblock").count() > 10
    assert refused == []
    assert not [text for text in console if "Content Security Policy" in text], console
