"""A subscriber's own data over the API, on SQLite and PostgreSQL: saved payment methods (listed
without card numbers, removed — which turns off the automatic renewal they paid, says so, and
detaches the card at Stripe), the PDPO data export (masked identity number unless the password is
given, no card number, no staff-only notes, rate limited, audited), and closing the account (its
effects at once, the number recycled by the usual rules, erasure when each retention ends)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.identity import DocumentType, mask_document_number, normalise_document_number
from duckline.accounts.models import Account, AccountClosure, ApiToken, DocumentImage, Person
from duckline.accounts.roles import Role
from duckline.billing.models import Order, Payment, Receipt, SavedPaymentMethod
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core import jobs
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.lines.models import Line, PoolNumber
from duckline.lines.states import LineStatus
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from duckline.sip.models import SipAccount
from duckline.staff.models import AuditEntry
from duckline.support import cases as tickets
from duckline.support import conversations as support
from tests.app_pool import pooled_app
from tests.factories import (
    PASSWORD,
    deliver,
    hk_mobile,
    hkid,
    last_code,
    numbers,
    pay_on_sandbox,
    place_order,
    plan_input,
    register,
    register_and_verify,
    staff,
)
from tests.provider_fakes import fake_stripe, stripe_settings, with_settings

PRICE = 8800
CARD_NUMBER = "4242424242424242"


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 3)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=PRICE))
    return register_and_verify(client, runtime, 1)


def renew_saving_the_card(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> dict[str, Any]:
    created = place_order(client, subscriber, auto_renew=True)
    assert created.status_code == 201, created.text
    assert pay_on_sandbox(client, created.json(), card=CARD_NUMBER, save=True).status_code == 303
    deliver(runtime, client, clock)
    order = client.get(f"/api/v1/orders/{created.json()['id']}", headers=subscriber["headers"]).json()
    assert order["status"] == "fulfilled", order
    return dict(order)


def the_line(runtime: Runtime, line_id: int) -> Line:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        assert line is not None
        return line


def audit_actions(runtime: Runtime, account_id: int) -> list[str]:
    with runtime.unit_of_work() as uow:
        return list(uow.session.scalars(select(AuditEntry.action).where(AuditEntry.actor_id == account_id)))


def queued(runtime: Runtime, account_id: int, template: str) -> list[Notification]:
    with runtime.unit_of_work() as uow:
        return list(
            uow.session.scalars(
                select(Notification).where(Notification.account_id == account_id, Notification.template == template)
            )
        )


# --- saved payment methods ----------------------------------------------------------------------


def test_saved_methods_are_listed_by_brand_last_four_and_expiry_never_the_number(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    renew_saving_the_card(client, runtime, clock, subscriber)

    listed = client.get("/api/v1/me/payment-methods", headers=subscriber["headers"])

    assert listed.status_code == 200, listed.text
    [method] = listed.json()
    assert (method["brand"], method["last4"], method["expiry"]) == ("visa", "4242", "12/2034")
    assert method["label"] == "Visa •••• 4242"
    assert method["renews"] == [subscriber["line"]["msisdn"]]
    assert CARD_NUMBER not in listed.text and "sbxtok" not in listed.text  # nor the provider's token


def test_removing_the_method_auto_renew_uses_turns_auto_renew_off_and_says_so(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    renew_saving_the_card(client, runtime, clock, subscriber)
    line_id = subscriber["line"]["id"]
    assert the_line(runtime, line_id).auto_renew
    [method] = client.get("/api/v1/me/payment-methods", headers=subscriber["headers"]).json()

    removed = client.delete(f"/api/v1/me/payment-methods/{method['id']}", headers=subscriber["headers"])

    assert removed.status_code == 200, removed.text
    assert removed.json()["auto_renew_off"] == [subscriber["line"]["msisdn"]]
    assert removed.json()["detached"] is None  # the sandbox keeps nothing to forget
    line = the_line(runtime, line_id)
    assert (line.auto_renew, line.auto_renew_method_id) == (False, None)
    assert client.get("/api/v1/me/payment-methods", headers=subscriber["headers"]).json() == []
    [sms] = [n for n in queued(runtime, subscriber["account"]["id"], "payment_method_removed_auto_renew_off")]
    assert "Visa •••• 4242" in sms.body and "automatic renewal" in sms.body
    assert "payment_method.removed" in audit_actions(runtime, subscriber["account"]["id"])
    # Auto-renew cannot come back on without a method.
    again = client.patch(f"/api/v1/lines/{line_id}/auto-renew", json={"enabled": True}, headers=subscriber["headers"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "saved_method_required"
    # Removed once: a second time, and another subscriber's, look missing.
    assert client.delete(f"/api/v1/me/payment-methods/{method['id']}", headers=subscriber["headers"]).status_code == 404


def test_another_subscribers_method_cannot_be_removed(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    renew_saving_the_card(client, runtime, clock, subscriber)
    [method] = client.get("/api/v1/me/payment-methods", headers=subscriber["headers"]).json()
    other = register_and_verify(client, runtime, 2)

    refused = client.delete(f"/api/v1/me/payment-methods/{method['id']}", headers=other["headers"])

    assert refused.status_code == 404
    with runtime.unit_of_work() as uow:
        saved = uow.session.get(SavedPaymentMethod, method["id"])
        assert saved is not None and saved.revoked_at is None


def test_a_card_saved_at_stripe_is_detached_there_when_removed(settings: Settings, clock: FrozenClock) -> None:
    with fake_stripe() as stripe:
        runtime = Runtime(stripe_settings(settings, stripe), clock=clock)
        try:
            with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1") as client:
                numbers(runtime, 1)
                admin, _ = staff(runtime, Role.ADMIN, 1)
                with runtime.unit_of_work() as uow:
                    catalog.create_plan(uow, admin, plan_input("monthly", price=PRICE))
                subscriber = register_and_verify(client, runtime, 1)
                order = place_order(client, subscriber, auto_renew=True).json()
                with runtime.unit_of_work() as uow:
                    payment = uow.session.get(Payment, order["payments"][-1]["id"])
                    assert payment is not None and payment.provider_ref
                    intent = payment.provider_ref
                stripe.confirm(intent, "pm_card_visa")
                back = client.get(f"/api/v1/payments/{payment.id}/return", headers=subscriber["headers"])
                assert back.json()["status"] == "fulfilled", back.text
                [method] = client.get("/api/v1/me/payment-methods", headers=subscriber["headers"]).json()
                assert (method["label"], method["expiry"]) == ("Visa •••• 4242", "12/2034")

                removed = client.delete(f"/api/v1/me/payment-methods/{method['id']}", headers=subscriber["headers"])

                assert removed.status_code == 200, removed.text
                assert removed.json()["detached"] is True
                assert stripe.detached == {"pm_card_visa"}
                assert "payment_method.detached" in audit_actions(runtime, subscriber["account"]["id"])
        finally:
            runtime.close()


# --- the data export ----------------------------------------------------------------------------


def export(client: TestClient, subscriber: dict[str, Any], **body: Any) -> Any:
    return client.post("/api/v1/me/data-export", json=body, headers=subscriber["headers"])


def test_the_export_holds_the_account_lines_and_payments_but_no_card_number_and_no_staff_notes(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = renew_saving_the_card(client, runtime, clock, subscriber)
    support_staff, _ = staff(runtime, Role.SUPPORT, 2)
    with runtime.unit_of_work() as uow:
        me = uow.session.get(Account, subscriber["account"]["id"])
        assert me is not None
        ticket = support.open_ticket(uow, me, "Roaming", "Data does not work in Shenzhen.")
        support.reply(uow, support_staff, ticket, "Please restart the phone.")
        # A case Duckline opened about the subscriber's order: staff talk about it among themselves.
        case = tickets.open_ticket(uow, "reconciliation", "Paid, not applied", "check", me.id, order["id"])
        support.reply(uow, support_staff, case, "STAFF ONLY: suspect a retry storm")

    response = export(client, subscriber)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["content-disposition"].startswith('attachment; filename="duckline-data-')
    data = json.loads(response.content)
    assert data["account"]["phone"] == subscriber["phone"]
    assert [line["msisdn"] for line in data["lines"]] == [subscriber["line"]["msisdn"]]
    sip = data["lines"][0]["sip_account"]
    assert sip["username"] == subscriber["line"]["msisdn"].removeprefix("+") and sip["domain"]
    with runtime.unit_of_work() as uow:
        ha1 = uow.session.scalars(select(SipAccount.ha1)).first()
    assert ha1 is not None and ha1 not in response.text  # a credential, like the activation code
    assert [o["id"] for o in data["orders"]] == [order["id"]]
    assert data["payments"][0]["card_last4"] == "4242"
    assert data["receipts"][0]["number"] == order["receipt_number"]
    assert data["saved_payment_methods"][0]["card_expiry"] == "12/2034"
    assert data["identity"]["document_number"] == mask_document_number(
        normalise_document_number(DocumentType.HKID, hkid(1))
    )
    assert data["identity"]["document_number_shown"] == "masked"
    [conversation] = data["tickets"]
    assert [m["from"] for m in conversation["messages"]] == ["support"]
    assert data["consents"]["messages"]["sms"]["security"] is True
    assert data["retention"]["financial_years"] == 7
    assert any(entry["action"] == "account.registered" for entry in data["audit"])
    text = response.text
    assert CARD_NUMBER not in text and "sbxtok" not in text.replace('"provider_reference"', "")
    assert "STAFF ONLY" not in text and "retry storm" not in text
    assert "password_hash" not in text and "$argon2" not in text
    with runtime.unit_of_work() as uow:
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "account.data_exported")).one()
        assert entry.detail == {"identity": "masked", "format": "json"}


def test_the_full_identity_number_needs_the_password(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    wrong = export(client, subscriber, password="not the password")
    assert wrong.status_code == 422
    assert (wrong.json()["error"]["code"], wrong.json()["error"]["field"]) == ("password_wrong", "password")

    right = export(client, subscriber, password=PASSWORD)

    assert right.status_code == 200
    identity = json.loads(right.content)["identity"]
    number = normalise_document_number(DocumentType.HKID, hkid(1))  # as it is kept: "A0000011"
    assert (identity["document_number"], identity["document_number_shown"]) == (number, "full")
    with runtime.unit_of_work() as uow:
        details = [
            e.detail
            for e in uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "account.data_exported"))
        ]
    assert details == [{"identity": "full", "format": "json"}]
    assert all(number not in json.dumps(d) for d in details)


def test_the_zip_holds_the_json_and_each_receipt_as_pdf(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = renew_saving_the_card(client, runtime, clock, subscriber)

    response = export(client, subscriber, format="zip")

    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["duckline-data.json", f"receipts/{order['receipt_number']}.pdf"]
    assert archive.read(f"receipts/{order['receipt_number']}.pdf").startswith(b"%PDF")
    assert json.loads(archive.read("duckline-data.json"))["lines"][0]["msisdn"] == subscriber["line"]["msisdn"]


def test_exports_are_rate_limited(settings: Settings, clock: FrozenClock) -> None:
    runtime = Runtime(with_settings(settings, export_rate_limit="2/hour"), clock=clock)
    try:
        with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1") as client:
            numbers(runtime, 1)
            subscriber = register_and_verify(client, runtime, 1)
            statuses = [export(client, subscriber).status_code for _ in range(3)]
            assert statuses == [200, 200, 429]
    finally:
        runtime.close()


# --- closing the account ------------------------------------------------------------------------


def close(client: TestClient, subscriber: dict[str, Any], password: str = PASSWORD, confirm: bool = True) -> Any:
    return client.post(
        "/api/v1/me/closure", json={"password": password, "confirm": confirm}, headers=subscriber["headers"]
    )


def test_what_closing_keeps_is_stated_before(client: TestClient, subscriber: dict[str, Any]) -> None:
    terms = client.get("/api/v1/me/closure", headers=subscriber["headers"])

    assert terms.status_code == 200
    assert terms.json() == {
        "lines": "ended_at_once",
        "number_recycled_after_days": 90,
        "contact_details_erased_after_days": 30,
        "identity_record_erased_after_days": 365,
        "financial_records_kept_years": 7,
    }


@pytest.mark.parametrize(
    ("password", "confirm", "code"),
    [(PASSWORD, False, "closure_not_confirmed"), ("not the password", True, "password_wrong")],
)
def test_closing_needs_the_password_and_the_confirmation(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any], password: str, confirm: bool, code: str
) -> None:
    refused = close(client, subscriber, password, confirm)

    assert refused.status_code == 422 and refused.json()["error"]["code"] == code
    assert client.get("/api/v1/me", headers=subscriber["headers"]).status_code == 200
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(AccountClosure)) == 0


def test_guessing_the_password_on_the_closing_form_locks_sign_in(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    """The closing form checks the password as sign-in does: wrong guesses count towards the same lock."""
    failures = runtime.settings.login_lockout_failures
    answers = [close(client, subscriber, "not the password").json()["error"]["code"] for _ in range(failures)]

    assert answers[:-1] == ["password_wrong"] * (failures - 1) and answers[-1] == "login_locked"
    assert close(client, subscriber).json()["error"]["code"] == "login_locked"  # even the right one, for now
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(AccountClosure)) == 0


def test_closing_waits_for_a_payment_in_progress(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    assert place_order(client, subscriber).status_code == 201

    refused = close(client, subscriber)

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "closure_payment_in_progress"
    assert client.get("/api/v1/me", headers=subscriber["headers"]).status_code == 200


def test_closing_ends_everything_at_once_and_erases_each_thing_when_its_time_comes(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = renew_saving_the_card(client, runtime, clock, subscriber)
    account_id, line_id, msisdn = subscriber["account"]["id"], subscriber["line"]["id"], subscriber["line"]["msisdn"]
    with runtime.unit_of_work() as uow:
        person_id = uow.session.get(Account, account_id).person_id  # type: ignore[union-attr]
    closed_at = clock.now()

    closed = close(client, subscriber)

    assert closed.status_code == 200, closed.text
    assert closed.json()["lines_ended"] == [msisdn]
    # At once: the token is dead, sign-in is refused (said only to whoever knows the password).
    assert client.get("/api/v1/me", headers=subscriber["headers"]).status_code == 401
    login = client.post("/api/v1/auth/tokens", json={"phone": subscriber["phone"], "password": PASSWORD})
    assert login.status_code == 401 and login.json()["error"]["code"] == "account_closed"
    wrong = client.post("/api/v1/auth/tokens", json={"phone": subscriber["phone"], "password": "wrong password"})
    assert wrong.json()["error"]["code"] == "login_failed"
    line = the_line(runtime, line_id)
    assert (line.status, line.auto_renew, line.expires_at) == (LineStatus.EXPIRED, False, closed_at)
    with runtime.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None and account.closed_at == closed_at
        assert (
            uow.session.scalar(
                select(func.count()).where(ApiToken.account_id == account_id, ApiToken.revoked_at.is_(None))
            )
            == 0
        )
        assert uow.session.scalars(select(SavedPaymentMethod.revoked_at)).all() == [closed_at]
        closure = uow.session.scalars(select(AccountClosure)).one()
        assert closure.erase_contact_at == closed_at + timedelta(days=30)
        assert closure.erase_identity_at == closed_at + timedelta(days=365)
    assert "account.closed" in audit_actions(runtime, account_id)
    assert queued(runtime, account_id, "account_closed")
    assert queued(runtime, account_id, "payment_method_removed_auto_renew_off") == []  # one message, about the closure
    # A password reset gives a closed account nothing.
    client.post("/api/v1/auth/password-reset", json={"phone": subscriber["phone"]})
    with runtime.unit_of_work() as uow:
        assert not uow.session.scalars(
            select(Notification).where(Notification.template == "otp", Notification.created_at > closed_at)
        ).all()
    # The identity document can register again at once (with another number).
    again = register(client, hk_mobile(7), hkid(1))
    assert again.status_code == 201, again.text
    assert last_code(runtime, hk_mobile(7))

    # The number is recycled by the usual rules: grace and retention after the line ended.
    settings = runtime.settings
    clock.advance(timedelta(days=settings.grace_days + settings.retention_days, seconds=1))
    jobs.run(runtime, "lifecycle")
    assert the_line(runtime, line_id).status is LineStatus.RECYCLED
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(PoolNumber.available).where(PoolNumber.msisdn == msisdn)).one() is True

    # After 30 days (passed above): contact details and message texts erased; the phone is free.
    assert jobs.run(runtime, "privacy") == {"contact": 1, "identity": 0}
    with runtime.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None
        assert (account.phone, account.email) == (f"closed-{account_id}", None)
        texts = uow.session.scalars(select(Notification.body).where(Notification.account_id == account_id)).all()
        assert texts and set(texts) == {"[erased]"}
        assert account.person_id == person_id  # the identity record is kept longer
    assert register(client, subscriber["phone"], hkid(8)).status_code == 201

    # After 365 days: the identity record and its document image are gone; money records stay.
    clock.advance(timedelta(days=365))
    assert jobs.run(runtime, "privacy") == {"contact": 0, "identity": 1}
    assert jobs.run(runtime, "privacy") == {"contact": 0, "identity": 0}  # done once
    with runtime.unit_of_work() as uow:
        assert uow.session.get(Person, person_id) is None
        assert uow.session.scalars(select(DocumentImage).where(DocumentImage.person_id == person_id)).all() == []
        assert uow.session.get(Order, order["id"]) is not None
        assert uow.session.scalars(select(Payment).where(Payment.order_id == order["id"])).all()
        assert uow.session.scalars(select(Receipt).where(Receipt.order_id == order["id"])).all()
        closure = uow.session.scalars(select(AccountClosure)).one()
        assert closure.contact_erased_at is not None and closure.identity_erased_at is not None
