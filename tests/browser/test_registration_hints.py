"""Registration in a browser: the document number's hint follows the document type chosen, through
portal.js (the CSP allows no inline script), and the fallback list of every type's example is
hidden once the script runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from duckline.core import i18n
from tests.browser.conftest import Live, new_context, switch_language


@pytest.fixture
def browser_without_script(browser: Browser) -> Iterator[Page]:
    context = new_context(browser, java_script_enabled=False)
    yield context.new_page()
    context.close()


def test_the_document_hint_follows_the_chosen_type(page: Page, live: Live) -> None:
    page.goto(f"{live.base_url}/register")
    switch_language(page, "zh_Hans")
    hint = page.locator("#document_number-hint")
    assert hint.inner_text() == i18n.gettext("zh_Hans", "As printed on the document, for example A123456(3).")
    assert page.locator("#document_number-examples").is_hidden()

    page.select_option("#document_type", "passport")

    passport = i18n.gettext(
        "zh_Hans", "The number on the passport's photo page, letters and digits only, for example E12345678."
    )
    assert hint.inner_text() == passport and "A123456(3)" not in hint.inner_text()

    page.select_option("#document_type", "cn_resident_id")

    assert hint.inner_text() == i18n.gettext(
        "zh_Hans", "The 18 characters on the card, for example 11010519491231002X."
    )


def test_without_the_script_every_types_example_is_shown(browser_without_script: Page, live: Live) -> None:
    page = browser_without_script
    page.goto(f"{live.base_url}/register")

    examples = page.locator("#document_number-examples")
    assert examples.is_visible()
    assert "A123456(3)" in examples.inner_text() and "E12345678" in examples.inner_text()
