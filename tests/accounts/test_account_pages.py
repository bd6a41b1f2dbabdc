"""The subscriber's settings and support pages as a browser uses them: every form with its CSRF
token, a notice after each redirect, the refusals shown on the page, Chinese pages."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.models import Account, ContactChange
from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core import i18n
from duckline.core.clock import FrozenClock
from duckline.lines.models import Line
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from duckline.support import conversations as support
from duckline.support.models import Ticket
from duckline.web.portal import rendering
from tests.factories import (
    PASSWORD,
    deliver,
    last_emailed_code,
    numbers,
    pay_on_sandbox,
    place_order,
    plan_input,
    register_and_verify,
    staff,
)

OURS = ("settings.html", "support.html", "ticket.html")


def field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no {name} in the page"
    return html.unescape(found.group(1))


def text(page: str) -> str:
    """The page's visible text, roughly: tags removed, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def log_in(client: TestClient, phone: str) -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"phone": phone, "password": PASSWORD, "csrf_token": field(page.text, "csrf_token")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def submit(client: TestClient, page: str, action: str, data: dict[str, Any] | None = None) -> Any:
    """POST a form of `page` (a path): with the CSRF token the page carries, as a browser does."""
    token = field(client.get(page).text, "csrf_token")
    return client.post(action, data={**(data or {}), "csrf_token": token}, follow_redirects=False)


def account_row(runtime: Runtime, phone: str) -> Account:
    with runtime.unit_of_work() as uow:
        return uow.session.scalars(select(Account).where(Account.phone == phone)).one()


def line_row(runtime: Runtime, line_id: int) -> Line:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        assert line is not None
        return line


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 3)
    person = register_and_verify(client, runtime, 1)
    log_in(client, person["phone"])
    return person


def test_pages_need_a_login(client: TestClient) -> None:
    for path in ("/settings", "/support", "/support/1"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == f"/login?next={path}"


def test_the_login_form_locks_after_wrong_passwords_and_points_to_the_reset(
    client: TestClient, runtime: Runtime
) -> None:
    numbers(runtime, 1)
    phone = register_and_verify(client, runtime, 1)["phone"]
    token = field(client.get("/login").text, "csrf_token")

    def attempt(password: str) -> Any:
        return client.post("/login", data={"phone": phone, "password": password, "csrf_token": token})

    answers = [attempt("wrong password!") for _ in range(runtime.settings.login_lockout_failures)]
    right = attempt(PASSWORD)

    assert [a.status_code for a in answers[:-1]] == [401] * (len(answers) - 1)
    assert answers[-1].status_code == right.status_code == 429
    assert "sign-in is locked for 15 minutes" in text(right.text)
    assert 'href="/password-reset"' in right.text
    assert "duckline_session" not in client.cookies


def test_a_form_without_its_csrf_token_changes_nothing(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    line_id = subscriber["line"]["id"]

    response = client.post(f"/settings/lines/{line_id}/features", data={"voicemail": "on"}, follow_redirects=False)

    assert response.status_code == 403
    assert line_row(runtime, line_id).voicemail is False


def test_changing_language_renders_every_text_in_traditional_chinese(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing: set[tuple[str, str]] = set()
    monkeypatch.setattr(rendering, "missing_translations", missing)

    saved = submit(client, "/settings", "/language", {"language": "zh_Hant", "next": "/settings?saved=language"})
    assert saved.status_code == 303 and saved.headers["location"] == "/settings?saved=language"
    page = client.get(saved.headers["location"])
    support_submitted = submit(client, "/support", "/support", {"subject": "漫遊", "body": "請幫忙"})
    conversation = client.get(support_submitted.headers["location"])

    assert account_row(runtime, subscriber["phone"]).language == "zh_Hant"
    assert 'lang="zh-Hant-HK"' in page.text
    for english in ("Language saved.", "Save message preferences", "Voicemail"):
        assert i18n.gettext("zh_Hant", english) in text(page.text) and english not in text(page.text)
    assert i18n.gettext("zh_Hant", "Your ticket is open. We will reply here and tell you by SMS or email.") in text(
        conversation.text
    )
    ours = {message for message, name in i18n.template_messages() if any(part in name for part in OURS)}
    assert ours and not {message for _, message in missing if message in ours}


def test_message_preferences_are_saved_and_always_on_ones_are_refused(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    page = client.get("/settings").text
    assert 'name="shown" value="sms.reminders"' in page
    assert 'name="shown" value="sms.security"' not in page  # shown, but as a disabled box
    assert re.search(r'<input type="checkbox" checked disabled aria-labelledby="category-security channel-sms"', page)

    saved = submit(
        client,
        "/settings",
        "/settings/preferences",
        {"shown": ["sms.reminders", "email.marketing", "sms.support"], "enabled": ["email.marketing", "sms.support"]},
    )
    assert saved.headers["location"] == "/settings?saved=preferences"
    assert "Message preferences saved." in text(client.get(saved.headers["location"]).text)
    stored = account_row(runtime, subscriber["phone"]).preferences
    assert stored["sms"]["reminders"] is False and stored["email"]["marketing"] is True
    assert stored["sms"]["support"] is True

    refused = submit(client, "/settings", "/settings/preferences", {"shown": ["sms.security", "sms.reminders"]})

    assert refused.status_code == 422
    assert "Security, payment and service messages cannot be turned off." in text(refused.text)
    assert account_row(runtime, subscriber["phone"]).preferences == stored


def test_voicemail_and_caller_id_switches(client: TestClient, runtime: Runtime, subscriber: dict[str, Any]) -> None:
    line_id = subscriber["line"]["id"]
    assert (line_row(runtime, line_id).voicemail, line_row(runtime, line_id).caller_id) == (False, True)

    response = submit(client, "/settings", f"/settings/lines/{line_id}/features", {"voicemail": "on"})

    assert response.headers["location"] == "/settings?saved=features"
    assert (line_row(runtime, line_id).voicemail, line_row(runtime, line_id).caller_id) == (True, False)
    page = client.get("/settings?saved=features").text
    assert "Line features saved." in text(page)
    assert re.search(r'name="voicemail" value="on" checked', page)


def test_another_subscribers_line_looks_missing(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    other = register_and_verify(client, runtime, 2)
    line_id = other["line"]["id"]

    features = submit(client, "/settings", f"/settings/lines/{line_id}/features", {"voicemail": "on"})
    renew = submit(client, "/settings", f"/settings/lines/{line_id}/auto-renew", {"enabled": "on"})

    assert features.status_code == 404 and renew.status_code == 404
    assert "Not found." in text(features.text)
    assert line_row(runtime, line_id).voicemail is False


def test_email_is_changed_with_the_code_sent_to_it(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    bad = submit(client, "/settings", "/settings/email", {"email": "not an address"})
    assert bad.status_code == 422 and "Enter an email address like name@example.com." in text(bad.text)

    sent = submit(client, "/settings", "/settings/email", {"email": "wong@example.com", "password": PASSWORD})
    assert sent.headers["location"] == "/settings?saved=email_code_sent"
    page = client.get(sent.headers["location"]).text
    assert "Code sent to wong@example.com" in text(page) and 'id="email-code"' in page
    with runtime.unit_of_work() as uow:
        mail = uow.session.scalars(select(Notification).where(Notification.template == "email_verify")).one()
    assert mail.recipient == "wong@example.com"
    code = last_emailed_code(runtime, "wong@example.com")
    assert code not in mail.body  # sent: the stored message keeps no code

    wrong = submit(client, "/settings", "/settings/email/verify", {"code": "000000" if code != "000000" else "111111"})
    assert wrong.status_code == 422 and "The verification code is wrong." in text(wrong.text)
    assert account_row(runtime, subscriber["phone"]).email is None
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(ContactChange.attempts)).one() == 1  # the wrong try is counted

    confirmed = submit(client, "/settings", "/settings/email/verify", {"code": code})

    assert confirmed.headers["location"] == "/settings?saved=email"
    assert account_row(runtime, subscriber["phone"]).email == "wong@example.com"
    after = client.get(confirmed.headers["location"]).text
    assert "Your email address is changed." in text(after) and 'id="email-code"' not in after


def test_phone_change_asks_for_the_code_sent_by_sms(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    taken = submit(client, "/settings", "/settings/phone", {"phone": subscriber["phone"], "password": PASSWORD})
    assert taken.status_code == 409 and "This phone number is already registered." in text(taken.text)

    sent = submit(client, "/settings", "/settings/phone", {"phone": "+852 6100 0077", "password": PASSWORD})

    assert sent.headers["location"] == "/settings?saved=phone_code_sent"
    assert "Code sent by SMS to +852 6100 0077" in text(client.get(sent.headers["location"]).text)
    assert account_row(runtime, subscriber["phone"]).phone == subscriber["phone"]


def test_auto_renew_needs_a_saved_method_and_shows_it_masked(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    line_id = subscriber["line"]["id"]
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1)))
    assert "Automatic renewal charges a card saved with an earlier card payment" in text(client.get("/settings").text)

    refused = submit(client, "/settings", f"/settings/lines/{line_id}/auto-renew", {"enabled": "on"})

    assert refused.status_code == 409
    assert "Automatic renewal needs a card saved with an earlier card payment." in text(refused.text)
    assert line_row(runtime, line_id).auto_renew is False

    order = place_order(client, subscriber, auto_renew=True)
    assert pay_on_sandbox(client, order.json(), save=True).status_code == 303  # "Save for automatic renewals"
    deliver(runtime, client, clock)
    assert line_row(runtime, line_id).auto_renew is True
    assert "Visa •••• 4242" in text(client.get("/settings").text)
    off = submit(client, "/settings", f"/settings/lines/{line_id}/auto-renew", {"enabled": "off"})
    assert (
        off.headers["location"] == "/settings?saved=auto_renew_off" and line_row(runtime, line_id).auto_renew is False
    )
    on = submit(client, "/settings", f"/settings/lines/{line_id}/auto-renew", {"enabled": "on"})
    assert on.headers["location"] == "/settings?saved=auto_renew_on"
    assert line_row(runtime, line_id).auto_renew is True and line_row(runtime, line_id).auto_renew_method_id


def test_a_subscriber_opens_a_ticket_and_reads_the_staff_reply(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    empty = submit(client, "/support", "/support", {"subject": "  ", "body": "hello"})
    assert empty.status_code == 422 and 'aria-invalid="true"' in empty.text

    opened = submit(
        client, "/support", "/support", {"subject": "No data <b>roaming</b>", "body": "Line 1\n<script>x</script>"}
    )

    assert opened.status_code == 303
    path = opened.headers["location"].split("?")[0]
    page = client.get(opened.headers["location"]).text
    assert "Your ticket is open." in text(page)
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page
    assert "No data &lt;b&gt;roaming&lt;/b&gt;" in page

    supporter, _ = staff(runtime, Role.SUPPORT, 2)
    with runtime.unit_of_work() as uow:
        ticket = uow.session.scalars(select(Ticket)).one()
        support.reply(uow, supporter, ticket, "Turn data roaming on in Settings → Mobile data.")

    listing = text(client.get("/support").text)
    conversation = text(client.get(path).text)
    assert "No data <b>roaming</b>" in listing and "Support replied" in listing
    assert "Duckline support" in conversation
    assert "Turn data roaming on in Settings → Mobile data." in conversation

    replied = submit(client, path, f"{path}/messages", {"body": "Thanks, it works."})
    assert replied.headers["location"] == f"{path}?saved=sent"
    assert "Your reply is sent." in text(client.get(replied.headers["location"]).text)


def test_another_subscribers_ticket_looks_missing(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    other = register_and_verify(client, runtime, 2)
    with runtime.unit_of_work() as uow:
        owner = uow.session.get(Account, other["account"]["id"])
        assert owner is not None
        ticket_id = support.open_ticket(uow, owner, "Mine", "private").id

    seen = client.get(f"/support/{ticket_id}")
    reply = submit(client, "/support", f"/support/{ticket_id}/messages", {"body": "hi"})

    assert seen.status_code == 404 and "private" not in seen.text
    assert reply.status_code == 404
    with runtime.unit_of_work() as uow:
        assert support.messages(uow, uow.session.get(Ticket, ticket_id)) == []  # type: ignore[arg-type]


def test_a_bad_email_gets_one_message_in_the_banner_and_by_the_field(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    with runtime.unit_of_work() as uow:
        account_row_ = uow.session.scalars(select(Account).where(Account.phone == subscriber["phone"])).one()
        account_row_.language = "zh_Hans"

    bad = submit(client, "/settings", "/settings/email", {"email": "not an address"})

    banner = re.search(r'<p class="error" role="alert">([^<]*)</p>', bad.text)
    by_field = re.search(r'<p class="field-error" id="email-problem">([^<]*)</p>', bad.text)
    assert bad.status_code == 422 and banner and by_field
    expected = i18n.gettext("zh_Hans", "Enter an email address like name@example.com.")
    assert html.unescape(banner.group(1)) == html.unescape(by_field.group(1)) == expected
    assert expected != "Enter an email address like name@example.com." and "请求无效" not in bad.text
