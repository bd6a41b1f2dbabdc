"""The line page's SIP account section and its password reset, on both databases: the form needs
the CSRF token, the new password is shown once (with a QR code of it) and never again, and only
the line's holder can reset it."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import unquote

from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from duckline.accounts.models import Account
from duckline.runtime import Runtime
from duckline.sip.models import SipAccount
from tests.factories import register_and_verify
from tests.staff.test_console import browser, csrf, text
from tests.usage.test_usage import active_line


def stored_ha1(runtime: Runtime, line_id: int) -> str:
    with runtime.unit_of_work() as uow:
        return uow.session.scalars(select(SipAccount.ha1).where(SipAccount.line_id == line_id)).one()


def test_the_line_page_shows_the_account_and_a_reset_shows_the_password_once(
    client: TestClient, runtime: Runtime
) -> None:
    subscriber = active_line(client, runtime)
    own = browser(client, runtime, subscriber["phone"])
    line_id, user = subscriber["line"]["id"], subscriber["line"]["msisdn"].removeprefix("+")
    path = f"/lines/{line_id}/sip/password"

    page = own.get(f"/lines/{line_id}")
    shown = text(page.text)
    assert 'id="sip-account"' in page.text and f'action="{path}"' in page.text
    assert f"Username {user}" in shown and "Domain sip.duckline.example" in shown
    assert "SIP server 127.0.0.1:5060" in shown and "Reset SIP password" in shown
    before = stored_ha1(runtime, line_id)

    forged = own.post(path, data={"csrf_token": "forged"})
    assert forged.status_code == 403 and stored_ha1(runtime, line_id) == before

    done = own.post(path, data={"csrf_token": csrf(runtime, own)})

    assert done.status_code == 200 and done.headers["cache-control"] == "no-store"
    password = re.findall(r'<code id="sip-password">([^<]+)</code>', done.text)[0]
    domain = runtime.settings.sip_domain
    assert stored_ha1(runtime, line_id) == hashlib.md5(f"{user}:{domain}:{password}".encode()).hexdigest()  # noqa: S324
    assert "shown only this once" in text(done.text)
    image = re.findall(r'<img class="qr" id="sip-qr" src="data:image/svg\+xml;base64,([^"]+)"', done.text)
    assert image and base64.b64decode(image[0]).startswith(b"<svg")
    again = own.get(f"/lines/{line_id}")
    assert password not in again.text and password not in unquote(again.text)


def test_the_page_is_translated(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    own = browser(client, runtime, subscriber["phone"])
    line_id = subscriber["line"]["id"]

    with runtime.unit_of_work() as uow:
        holder = uow.session.get(Account, subscriber["account"]["id"])
        assert holder is not None
        holder.language = "zh_Hant"
    page = own.get(f"/lines/{line_id}")
    done = own.post(f"/lines/{line_id}/sip/password", data={"csrf_token": csrf(runtime, own)})

    assert "SIP 帳戶" in page.text and "重設 SIP 密碼" in page.text
    assert "新的 SIP 密碼" in done.text and "此密碼只會顯示這一次" in done.text


def test_someone_elses_line_is_not_found_and_staff_cannot_reset(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    line_id = subscriber["line"]["id"]
    other = register_and_verify(client, runtime, 2)
    stranger = browser(client, runtime, other["phone"])
    admin = browser(client, runtime, subscriber["admin"].phone)
    before = stored_ha1(runtime, line_id)

    refused = stranger.post(f"/lines/{line_id}/sip/password", data={"csrf_token": csrf(runtime, stranger)})
    staff_reset = admin.post(f"/lines/{line_id}/sip/password", data={"csrf_token": csrf(runtime, admin)})

    assert refused.status_code == 404 and stored_ha1(runtime, line_id) == before
    assert staff_reset.status_code in (403, 404) and stored_ha1(runtime, line_id) == before


def test_a_line_activated_before_sip_accounts_gets_one_at_its_first_reset(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    line_id = subscriber["line"]["id"]
    with runtime.unit_of_work() as uow:
        uow.session.execute(delete(SipAccount).where(SipAccount.line_id == line_id))
    own = browser(client, runtime, subscriber["phone"])

    page = own.get(f"/lines/{line_id}")
    done = own.post(f"/lines/{line_id}/sip/password", data={"csrf_token": csrf(runtime, own)})

    assert "Set a SIP password" in text(page.text) and f'action="/lines/{line_id}/sip/password"' in page.text
    assert done.status_code == 200 and 'id="sip-password"' in done.text
    assert stored_ha1(runtime, line_id)
