"""The subscriber's pages as a browser walks them: register with an identity document, verify
the SMS code, land on the new line's page with its eSIM; the lines list; usage history by day;
password reset by SMS; CSRF; other subscribers' lines look missing; Chinese pages."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.models import Account, Guardian, OtpChallenge, Person
from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.catalog.rules import Unit
from duckline.core import i18n
from duckline.core.clock import FrozenClock
from duckline.lines.models import Line
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from duckline.usage.history import Month
from duckline.web.portal import rendering
from tests.factories import PASSWORD, PNG, hk_mobile, hkid, last_code, numbers, plan_input, register_and_verify, staff

OURS = ("register", "password_reset", "lines.html", "line.html", "line_usage", "line_not_found", "_lines_macros")


def field(page: str, name: str) -> str:
    """The value of the (first) input called `name`."""
    tag = re.search(rf'<input[^>]*\bname="{name}"[^>]*>', page)
    assert tag, f"no {name} in the page"
    found = re.search(r'\bvalue="([^"]*)"', tag.group())
    return html.unescape(found.group(1)) if found else ""


def text(page: str) -> str:
    """The page's visible text, roughly: tags removed, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def field_error(page: str, name: str) -> str:
    found = re.search(rf'<p class="field-error" id="{name}-error">([^<]*)</p>', page)
    assert found, f"no error next to {name}"
    return html.unescape(found.group(1))


def identity(n: int, **overrides: str) -> dict[str, str]:
    form = {
        "phone": hk_mobile(n),
        "password": PASSWORD,
        "document_type": "hkid",
        "document_number": hkid(n),
        "name_en": "CHAN Tai Man",
        "name_zh": "陳大文",
        "birth_date": "1990-05-17",
    }
    form.update(overrides)
    return form


def register_form(
    client: TestClient, form: dict[str, str], headers: dict[str, str] | None = None, image: bytes = PNG
) -> Any:
    page = client.get("/register", headers=headers or {})
    assert page.status_code == 200
    return client.post(
        "/register",
        data={**form, "csrf_token": field(page.text, "csrf_token")},
        files={"document_image": ("id.png", image, "image/png")},
        headers=headers or {},
        follow_redirects=False,
    )


def login(client: TestClient, phone: str, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"phone": phone, "password": password, "csrf_token": field(page.text, "csrf_token")},
        follow_redirects=False,
    )


def signed_up(client: TestClient, runtime: Runtime, n: int) -> int:
    """Register and verify through the pages; the new subscriber is signed in. The line's id."""
    registered = register_form(client, identity(n))
    assert registered.status_code == 303, registered.text
    verify = client.get(registered.headers["location"])
    done = client.post(
        "/register/verify",
        data={
            "phone": hk_mobile(n),
            "code": last_code(runtime, hk_mobile(n)),
            "csrf_token": field(verify.text, "csrf_token"),
        },
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return int(done.headers["location"].rsplit("/", 1)[1])


def activated(client: TestClient, runtime: Runtime, subscriber: dict[str, Any]) -> dict[str, str]:
    """Put the subscriber's line on a plan (as staff do); the admin's headers."""
    admin, admin_headers = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("test-plan"))
    done = client.post(
        f"/api/v1/lines/{subscriber['line']['id']}/activate", json={"plan_code": "test-plan"}, headers=admin_headers
    )
    assert done.status_code == 200, done.text
    return admin_headers


# --- registration ------------------------------------------------------------------------------


def test_register_verify_and_land_on_the_line_with_its_esim(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 3)
    page = client.get("/register")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text
    for name in ("phone", "password", "document_type", "document_number", "name_en", "name_zh", "birth_date"):
        assert f'<label for="{name}">' in page.text and f'id="{name}"' in page.text
    assert "guardian_document_number" in page.text  # the under-16 fieldset is always there

    registered = register_form(client, identity(1))
    assert registered.status_code == 303, registered.text
    location = urlsplit(registered.headers["location"])
    assert location.path == "/register/verify" and parse_qs(location.query)["phone"] == [hk_mobile(1)]

    verify = client.get(registered.headers["location"])
    assert verify.status_code == 200 and field(verify.text, "phone") == hk_mobile(1)
    wrong = client.post(
        "/register/verify",
        data={"phone": hk_mobile(1), "code": "000000", "csrf_token": field(verify.text, "csrf_token")},
    )
    assert wrong.status_code == 422
    assert field_error(wrong.text, "code") == "The verification code is wrong."

    done = client.post(
        "/register/verify",
        data={
            "phone": hk_mobile(1),
            "code": last_code(runtime, hk_mobile(1)),
            "csrf_token": field(verify.text, "csrf_token"),
        },
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert re.fullmatch(r"/lines/\d+", done.headers["location"])
    assert "duckline_session" in done.headers["set-cookie"]

    line_page = client.get(done.headers["location"])
    assert line_page.status_code == 200
    line_id = int(done.headers["location"].rsplit("/", 1)[1])
    esim = client.get(f"/api/v1/lines/{line_id}/esim").json()  # the same cookie works on the API
    assert esim["activation_code"].startswith("LPA:1$")
    assert esim["activation_code"] in html.unescape(line_page.text)
    assert esim["iccid"] in line_page.text
    assert f'src="/api/v1/lines/{line_id}/esim/qr.svg"' in line_page.text
    assert client.get(f"/api/v1/lines/{line_id}/esim/qr.svg").headers["content-type"].startswith("image/svg+xml")
    assert "Install on an iPhone" in line_page.text and "Install on an Android phone" in line_page.text
    assert f'href="/lines/{line_id}/renew"' in line_page.text
    assert "style=" not in line_page.text  # the CSP forbids inline styles

    home = client.get("/")
    assert home.status_code == 200 and f'href="/lines/{line_id}"' in home.text
    assert "Waiting for a plan" in home.text
    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == hk_mobile(1))).one()
        assert account.phone_verified_at is not None
        assert uow.session.get(Line, line_id).account_id == account.id  # type: ignore[union-attr]


def test_resend_button_sends_another_code(client: TestClient, runtime: Runtime, clock: Any) -> None:
    from datetime import timedelta

    numbers(runtime, 1)
    registered = register_form(client, identity(2))
    verify = client.get(registered.headers["location"])
    first = last_code(runtime, hk_mobile(2))
    too_soon = client.post(
        "/register/verify",
        data={"phone": hk_mobile(2), "action": "resend", "csrf_token": field(verify.text, "csrf_token")},
    )
    assert too_soon.status_code == 429 and "Please wait" in too_soon.text
    clock.advance(timedelta(minutes=2))
    resent = client.post(
        "/register/verify",
        data={"phone": hk_mobile(2), "action": "resend", "csrf_token": field(verify.text, "csrf_token")},
    )
    assert resent.status_code == 200 and "A new code has been sent." in resent.text
    with runtime.unit_of_work() as uow:
        sent = uow.session.scalar(
            select(func.count()).select_from(OtpChallenge).where(OtpChallenge.phone == hk_mobile(2))
        )
    assert sent == 2 and first  # the newest code is the one that works
    done = client.post(
        "/register/verify",
        data={
            "phone": hk_mobile(2),
            "code": last_code(runtime, hk_mobile(2)),
            "csrf_token": field(verify.text, "csrf_token"),
        },
        follow_redirects=False,
    )
    assert done.status_code == 303


def test_a_bad_hkid_is_shown_next_to_its_field_in_chinese_and_creates_nothing(
    client: TestClient, runtime: Runtime
) -> None:
    chinese = {"Accept-Language": "zh-HK,zh;q=0.9,en;q=0.5"}
    wrong_check_digit = hkid(3).replace("(", "").replace(")", "")[:-1] + "X"

    shown = register_form(client, identity(3, document_number=wrong_check_digit), headers=chinese)

    assert shown.status_code == 422
    assert 'lang="zh-Hant-HK"' in shown.text
    expected = i18n.gettext("zh_Hant", "The identity document number is not valid.")
    assert expected != "The identity document number is not valid."
    assert field_error(shown.text, "document_number") == expected
    assert re.search(r'id="document_number"[^>]*aria-invalid="true"', shown.text, re.S)
    assert re.search(r'aria-describedby="document_number-hint document_number-error"', shown.text)
    # What was typed comes back, except the password and the file.
    assert field(shown.text, "document_number") == wrong_check_digit
    assert field(shown.text, "name_zh") == "陳大文"
    assert field(shown.text, "phone") == hk_mobile(3)
    assert PASSWORD not in shown.text
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Account)) == 0
        assert uow.session.scalar(select(func.count()).select_from(Person)) == 0
        assert uow.session.scalar(select(func.count()).select_from(OtpChallenge)) == 0


@pytest.mark.parametrize(
    ("overrides", "image", "name", "message"),
    [
        ({"password": "short"}, PNG, "password", "The password must have at least 10 characters."),
        ({"password": "short", "birth_date": ""}, PNG, "password", "The password must have at least 10 characters."),
        ({"phone": "12345"}, PNG, "phone", "This is not a valid mobile number."),
        ({"birth_date": ""}, PNG, "birth_date", "The date of birth is not valid."),
        ({}, b"not an image", "document_image", "The document image must be a JPEG, PNG or PDF file."),
        ({"birth_date": "2015-01-01"}, PNG, "guardian", "Subscribers under 16 need a registering adult."),
        (
            {"birth_date": "2015-01-01", "guardian_document_type": "hkid", "guardian_document_number": "A1"},
            PNG,
            "guardian",
            "Subscribers under 16 need a registering adult.",
        ),
        (
            {
                "birth_date": "2015-01-01",
                "guardian_document_type": "hkid",
                "guardian_document_number": hkid(6),
                "guardian_name_en": "CHAN Siu Ming",
                "guardian_birth_date": "01/01/1980",
            },
            PNG,
            "guardian_birth_date",
            "The date of birth is not valid.",
        ),
    ],
    ids=[
        "password",
        "password-before-date",
        "phone",
        "birth-date",
        "image",
        "guardian",
        "half-a-guardian",
        "guardian-date",
    ],
)
def test_each_mistake_is_shown_next_to_its_field(
    client: TestClient, runtime: Runtime, overrides: dict[str, str], image: bytes, name: str, message: str
) -> None:
    shown = register_form(client, identity(4, **overrides), image=image)

    assert shown.status_code == 422
    assert field_error(shown.text, name) == message
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Account)) == 0


def test_an_under_16_registers_with_an_adult(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    form = identity(
        5,
        birth_date="2015-01-01",
        guardian_document_type="hkid",
        guardian_document_number=hkid(6),
        guardian_name_en="CHAN Siu Ming",
        guardian_birth_date="1980-01-01",
    )

    registered = register_form(client, form)

    assert registered.status_code == 303, registered.text
    with runtime.unit_of_work() as uow:
        child = uow.session.scalars(select(Person).where(Person.guardian_id.is_not(None))).one()
        assert uow.session.get(Guardian, child.guardian_id).name_en == "CHAN Siu Ming"  # type: ignore[union-attr]


def test_the_register_page_does_not_tell_who_is_registered(client: TestClient, runtime: Runtime) -> None:
    """A number or an identity that already has an account goes on to the code page like a new
    one; the owner is the one who hears of it."""
    numbers(runtime, 1)
    signed_up(client, runtime, 20)
    client.cookies.clear()

    answers = {
        "new": register_form(client, identity(21)),
        "same phone": register_form(client, identity(20, document_number=hkid(22))),
        "same identity": register_form(client, identity(23, document_number=hkid(20))),
    }
    for name, answer in answers.items():
        assert answer.status_code == 303, (name, answer.text)
        assert urlsplit(answer.headers["location"]).path == "/register/verify", name
        page = client.get(answer.headers["location"])
        assert page.status_code == 200 and "already" not in page.text.lower(), name
    assert parse_qs(urlsplit(answers["same identity"].headers["location"]).query)["phone"] == [hk_mobile(23)]
    with runtime.unit_of_work() as uow:
        told = uow.session.scalars(select(Notification.template).where(Notification.recipient == hk_mobile(20)))
        assert sorted(told) == ["otp", "registration_attempt_identity", "registration_attempt_phone"]


# --- lines -------------------------------------------------------------------------------------


def test_home_sends_visitors_to_login_and_staff_to_the_console(client: TestClient, runtime: Runtime) -> None:
    visitor = client.get("/", follow_redirects=False)
    assert visitor.status_code == 303 and visitor.headers["location"] in ("/login", "/login?next=/")
    page = client.get("/lines/1", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")

    staff(runtime, Role.SUPPORT, 7)
    assert login(client, "+85251000007").status_code == 303
    assert client.get("/", follow_redirects=False).headers["location"] == "/console"


def test_another_subscribers_line_is_not_found(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 4)
    other = register_and_verify(client, runtime, 8)
    mine = signed_up(client, runtime, 9)

    assert client.get(f"/lines/{mine}").status_code == 200
    for path in (f"/lines/{other['line']['id']}", f"/lines/{other['line']['id']}/usage", "/lines/987654"):
        page = client.get(path)
        assert page.status_code == 404, path
        assert other["line"]["msisdn"] not in page.text and "Line not found" in page.text
    assert other["line"]["msisdn_display"] not in client.get("/").text


def test_line_page_shows_balances_expiry_and_warnings(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 2)
    subscriber = register_and_verify(client, runtime, 10)
    activated(client, runtime, subscriber)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn = subscriber["line"]["msisdn"]
    batch = {"records": [usage(msisdn, "r1", "sms", 95), usage(msisdn, "r2", "voice", 600)]}
    assert client.post("/api/v1/usage/batches", json=batch, headers=network).status_code == 200
    assert login(client, subscriber["phone"]).status_code == 303

    page = client.get(f"/lines/{subscriber['line']['id']}")

    assert page.status_code == 200
    body = text(page.text)
    assert "Test plan test-plan" not in body and "Plan test-plan" in body
    assert "5 SMS left" in body and "95 SMS used of 100 SMS (95%)" in body
    assert "90 min left" in body and "10 min used of 100 min (10%)" in body
    assert "9.5 MB left" in body  # 10,000,000 bytes
    assert '<progress class="usage warn" max="100" value="95"' in page.text
    assert "You have used 95% of your SMS in Hong Kong." in body
    assert "30 days" in body and "0 hours" in body  # 30 days from activation, server-rendered
    assert "Voicemail Off" in body and "Your number is shown" in body
    home = text(client.get("/").text)
    assert "Active" in home and "Plan test-plan" in home and "30 days left" in home


def usage(
    msisdn: str, record_id: str, kind: str, quantity: int, at: str = "2026-11-24T10:05:00+08:00"
) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "msisdn": msisdn,
        "kind": kind,
        "zone": "HK",
        "quantity": quantity,
        "started_at": at,
    }


def test_usage_page_shows_each_days_totals_and_the_records(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    numbers(runtime, 2)
    subscriber = register_and_verify(client, runtime, 11)
    activated(client, runtime, subscriber)
    _, network = staff(runtime, Role.NETWORK, 90)
    clock.advance(timedelta(days=1))  # the records arrive once they are over: usage from the future is refused
    msisdn, line_id = subscriber["line"]["msisdn"], subscriber["line"]["id"]
    batch = {
        "records": [
            usage(msisdn, "c1", "voice", 125),
            usage(msisdn, "s1", "sms", 1, at="2026-11-24T23:30:00+08:00"),
            usage(msisdn, "s2", "sms", 150, at="2026-11-25T00:30:00+08:00"),  # 99 left: 51 are overage
            usage(msisdn, "d1", "data", 3 * 1024 * 1024, at="2026-11-25T09:00:00+08:00"),
        ]
    }
    assert client.post("/api/v1/usage/batches", json=batch, headers=network).json()["applied"] == 4
    assert login(client, subscriber["phone"]).status_code == 303

    page = client.get(f"/lines/{line_id}/usage?month=2026-11")

    assert page.status_code == 200
    assert "style=" not in page.text
    assert page.text.count('<svg class="chart"') == 3
    assert 'class="bar-voice"' in page.text and 'class="bar-sms"' in page.text and 'class="bar-data"' in page.text
    rows = {
        match.group(1): text(match.group(2))
        for match in re.finditer(r'<tr>\s*<th scope="row"><time datetime="([\d-]+)">(.*?)</tr>', page.text, re.S)
    }
    assert rows["2026-11-24"] == "24 Nov 2 min 5 s 1 SMS —"
    assert rows["2026-11-25"] == "25 Nov — 150 SMS 3 MB"
    body = text(page.text)
    assert "150 SMS 99 SMS 51 SMS" in body  # quantity, from the allowance, overage
    assert "November 2026" in body
    assert f'href="/lines/{line_id}/usage?month=2026-10"' in page.text
    assert "month=2026-12" not in page.text  # no next month after the current one

    earlier = client.get(f"/lines/{line_id}/usage?month=2026-10")
    assert earlier.status_code == 200 and "No usage in this month." in earlier.text
    assert client.get(f"/lines/{line_id}/usage?month=nonsense").status_code == 200


def test_month_arithmetic() -> None:
    assert str(Month(2026, 1).previous()) == "2025-12" and str(Month(2026, 12).next()) == "2027-01"
    assert Month(2028, 2).days == 29 and Month(2026, 2).days == 28
    assert Month.parse("2026-13", Month(2026, 11).first_day) == Month(2026, 11)


# --- password reset -----------------------------------------------------------------------------


def test_password_reset_end_to_end(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 12)
    phone = subscriber["phone"]
    assert client.get("/api/v1/me", headers=subscriber["headers"]).status_code == 200

    page = client.get("/password-reset")
    asked = client.post(
        "/password-reset", data={"step": "request", "phone": phone, "csrf_token": field(page.text, "csrf_token")}
    )
    assert asked.status_code == 200 and 'name="code"' in asked.text
    code = last_code(runtime, phone)

    weak = client.post(
        "/password-reset",
        data={
            "step": "confirm",
            "phone": phone,
            "code": code,
            "password": "short",
            "csrf_token": field(page.text, "csrf_token"),
        },
    )
    assert weak.status_code == 422
    assert field_error(weak.text, "password") == "The password must have at least 10 characters."
    wrong = client.post(
        "/password-reset",
        data={
            "step": "confirm",
            "phone": phone,
            "code": "000000" if code != "000000" else "111111",
            "password": "a brand new password",
            "csrf_token": field(page.text, "csrf_token"),
        },
    )
    assert wrong.status_code == 422 and field_error(wrong.text, "code") == "The verification code is wrong."
    done = client.post(
        "/password-reset",
        data={
            "step": "confirm",
            "phone": phone,
            "code": code,
            "password": "a brand new password",
            "csrf_token": field(page.text, "csrf_token"),
        },
    )
    assert done.status_code == 200 and "Your password has been changed." in done.text

    assert login(client, phone).status_code == 401  # the old password stops working
    assert client.get("/api/v1/me", headers=subscriber["headers"]).status_code == 401  # tokens revoked
    assert login(client, phone, "a brand new password").status_code == 303
    again = client.post(
        "/password-reset",
        data={
            "step": "confirm",
            "phone": phone,
            "code": code,
            "password": "yet another password",
            "csrf_token": field(client.get("/password-reset").text, "csrf_token"),
        },
    )
    assert again.status_code == 422  # a code works once


def test_password_reset_does_not_tell_who_is_registered(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 13)
    page = client.get("/password-reset")
    token = field(page.text, "csrf_token")

    known = client.post("/password-reset", data={"step": "request", "phone": subscriber["phone"], "csrf_token": token})
    unknown = client.post("/password-reset", data={"step": "request", "phone": hk_mobile(14), "csrf_token": token})
    again = client.post("/password-reset", data={"step": "request", "phone": subscriber["phone"], "csrf_token": token})

    assert known.status_code == unknown.status_code == again.status_code == 200
    assert known.text.replace(subscriber["phone"], "X") == unknown.text.replace(hk_mobile(14), "X")
    with runtime.unit_of_work() as uow:
        purposes = uow.session.scalars(select(OtpChallenge.purpose).where(OtpChallenge.phone == hk_mobile(14))).all()
    assert purposes == []


def test_password_reset_api(client: TestClient, runtime: Runtime) -> None:
    from duckline.accounts.api import password

    app: Any = client.app
    if not any(getattr(route, "path", "") == "/api/v1/auth/password-reset" for route in app.routes):
        app.include_router(password.router, prefix="/api/v1")  # until app.py registers it
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 15)
    phone = subscriber["phone"]

    known = client.post("/api/v1/auth/password-reset", json={"phone": phone})
    unknown = client.post("/api/v1/auth/password-reset", json={"phone": hk_mobile(16)})
    assert known.status_code == unknown.status_code == 202 and known.json() == unknown.json()
    bad = client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"phone": phone, "code": last_code(runtime, phone), "new_password": "short"},
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "password"
    reset = client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"phone": phone, "code": last_code(runtime, phone), "new_password": "a brand new password"},
    )
    assert reset.status_code == 204, reset.text
    assert client.post("/api/v1/auth/tokens", json={"phone": phone, "password": PASSWORD}).status_code == 401
    assert (
        client.post("/api/v1/auth/tokens", json={"phone": phone, "password": "a brand new password"}).status_code == 201
    )
    assert client.get("/api/v1/me", headers=subscriber["headers"]).status_code == 401


# --- CSRF and languages ---------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    client.get("/register")  # the CSRF cookie is set; the form field is what is missing
    refused = client.post("/register", data=identity(17), files={"document_image": ("id.png", PNG, "image/png")})
    assert refused.status_code == 403
    assert client.post("/register/verify", data={"phone": hk_mobile(17), "code": "123456"}).status_code == 403
    assert client.post("/password-reset", data={"step": "request", "phone": hk_mobile(17)}).status_code == 403
    forged = client.post("/password-reset", data={"phone": hk_mobile(17), "csrf_token": "forged"})
    assert forged.status_code == 403
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Account)) == 0
        assert uow.session.scalar(select(func.count()).select_from(OtpChallenge)) == 0


@pytest.mark.parametrize(("accept", "language"), [("zh-HK", "zh_Hant"), ("zh-CN", "zh_Hans")])
def test_pages_in_chinese_have_every_text_translated(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, accept: str, language: str
) -> None:
    numbers(runtime, 2)
    subscriber = register_and_verify(client, runtime, 18)
    activated(client, runtime, subscriber)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn, line_id = subscriber["line"]["msisdn"], subscriber["line"]["id"]
    batch = {"records": [usage(msisdn, "s1", "sms", 99), usage(msisdn, "v1", "voice", 61)]}
    client.post("/api/v1/usage/batches", json=batch, headers=network)
    missing: set[tuple[str, str]] = set()
    monkeypatch.setattr(rendering, "missing_translations", missing)
    headers = {"Accept-Language": accept}

    pages = [client.get(path, headers=headers) for path in ("/register", "/password-reset")]
    pages.append(client.get("/register/verify?phone=%2B85261000001", headers=headers))
    shown = register_form(client, identity(19, document_number="A1", birth_date="2015-01-01"), headers=headers)
    assert login(client, subscriber["phone"]).status_code == 303
    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == subscriber["phone"])).one()
        account.language = language  # the account's language wins over the browser's
    pages += [client.get(path) for path in ("/", f"/lines/{line_id}", f"/lines/{line_id}/usage", "/lines/999")]

    assert all(f'lang="{rendering.HTML_LANG[language]}"' in page.text for page in [*pages, shown])
    assert i18n.gettext(language, "Usage history") in pages[-2].text
    ours = {message for message, name in i18n.template_messages() if any(part in name for part in OURS)}
    assert ours and not {message for lang, message in missing if message in ours}


def test_units_are_shown_in_people_units() -> None:
    from duckline.lines.pages import _formatters

    f: Any = _formatters("en", "Asia/Hong_Kong")
    assert f["quantity"](Unit.VOICE_SECONDS.value, 90, "down") == [("1", "min")]
    assert f["quantity"](Unit.VOICE_SECONDS.value, 90, "up") == [("2", "min")]
    assert f["quantity"](Unit.DATA_BYTES.value, 5 * 1024**3) == [("5", "gb")]
    assert f["quantity"](Unit.DATA_BYTES.value, 1536 * 1024) == [("1.5", "mb")]
    assert f["quantity"](Unit.SMS.value, 1200) == [("1,200", "sms")]
    assert f["duration"](125) == [("2", "min"), ("5", "s")] and f["duration"](0) == [("0", "s")]


def test_a_new_lines_status_has_one_name_on_every_page(client: TestClient, runtime: Runtime) -> None:
    """The line page, the renew page and Settings call a line waiting for its first plan the same."""
    numbers(runtime, 2)
    subscriber = register_and_verify(client, runtime, 20)
    assert login(client, subscriber["phone"]).status_code == 303
    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == subscriber["phone"])).one()
        account.language = "zh_Hans"
    line_id = subscriber["line"]["id"]

    names = {
        path: re.findall(r'<span class="status pending">([^<]*)</span>', client.get(path).text)
        for path in (f"/lines/{line_id}", f"/lines/{line_id}/renew", "/settings", "/")
    }

    assert names == {path: [i18n.gettext("zh_Hans", "Waiting for a plan")] for path in names}
    assert names[f"/lines/{line_id}"] == ["待选择套餐"]


def document_hint(page: str) -> str:
    found = re.search(r'<p class="field-hint" id="document_number-hint">([^<]*)</p>', page)
    assert found, "no hint for the document number"
    return html.unescape(found.group(1)).strip()


def test_the_document_number_hint_follows_the_document_type(client: TestClient, runtime: Runtime) -> None:
    """The hint is rendered for the type chosen; each option carries its own example for portal.js to
    swap in, and a list of every type's example stands in for the script where it does not run."""
    hans = {"Accept-Language": "zh-CN"}
    blank = client.get("/register", headers=hans).text
    hkid_hint = i18n.gettext("zh_Hans", "As printed on the document, for example A123456(3).")
    passport_hint = i18n.gettext(
        "zh_Hans", "The number on the passport's photo page, letters and digits only, for example E12345678."
    )
    assert passport_hint.endswith("E12345678。")
    assert document_hint(blank) == hkid_hint
    hints = dict(re.findall(r'<option value="([a-z_]+)" data-hint="([^"]*)"', blank))
    assert set(hints) == {"hkid", "cn_resident_id", "cn_travel_permit", "passport"}
    assert html.unescape(hints["passport"]) == passport_hint and html.unescape(hints["hkid"]) == hkid_hint
    examples = re.search(r'<ul class="field-hint" id="document_number-examples">(.*?)</ul>', blank, re.S)
    assert examples and all(
        example in html.unescape(examples.group(1)) for example in map(html.unescape, hints.values())
    )
    assert "document_number-hint" in re.search(r'<input id="document_number"[^>]*>', blank, re.S).group()  # type: ignore[union-attr]

    shown = register_form(client, identity(5, document_type="passport", document_number="E1"), headers=hans)

    assert shown.status_code == 422
    assert document_hint(shown.text) == passport_hint
    assert "A123456(3)" not in document_hint(shown.text)
    assert re.search(r'<option value="passport" data-hint="[^"]*" selected>', shown.text)


def test_a_missing_document_image_is_reported_as_missing(client: TestClient, runtime: Runtime) -> None:
    page = client.get("/register", headers={"Accept-Language": "zh-CN"})
    shown = client.post(
        "/register",
        data={**identity(6), "csrf_token": field(page.text, "csrf_token")},
        files={"document_image": ("", b"", "application/octet-stream")},  # what a browser sends with no file
        headers={"Accept-Language": "zh-CN"},
        follow_redirects=False,
    )

    assert shown.status_code == 422
    expected = i18n.gettext("zh_Hans", "Attach a photo or scan of your identity document.")
    assert expected.startswith("请")
    assert field_error(shown.text, "document_image") == expected
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Account)) == 0


def test_the_document_hints_are_escaped_once(client: TestClient) -> None:
    page = client.get("/register").text

    assert "&amp;#39;" not in page and "&amp;amp;" not in page
    assert "Passport: The number on the passport&#39;s photo page" in page
