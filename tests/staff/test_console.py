"""The staff console (/console) as staff use it in a browser: log in, search, review, refund, edit
the catalogue, resolve reconciliation cases. Every route checks the role on the server, every POST
the CSRF token, and every change lands in the audit log."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.identity import KycStatus
from duckline.accounts.models import Account, Person
from duckline.accounts.roles import Role
from duckline.billing.models import Order, Refund
from duckline.billing.order_states import OrderStatus
from duckline.catalog import service as catalog
from duckline.catalog.models import Plan, PlanAllowance, Promotion
from duckline.catalog.rules import PlanStatus, Unit, Validity, Zone
from duckline.core.clock import FrozenClock
from duckline.lines.models import PoolNumber
from duckline.runtime import Runtime
from duckline.staff.models import AuditEntry
from duckline.support.models import Ticket
from duckline.usage import quota
from duckline.usage.ingest import UsageKind
from duckline.web.deps import SESSION_COOKIE, csrf_token, session_signer
from duckline.web.portal import rendering
from tests.factories import (
    PASSWORD,
    buy,
    deliver,
    hkid,
    numbers,
    pay_on_sandbox,
    place_order,
    plan_input,
    register_and_verify,
    staff,
)
from tests.provider_fakes import sandbox_event, sandbox_ref

LOSE_WEBHOOK = "4000000000000077"  # the sandbox captures it, but its webhook never arrives


@pytest.fixture
def world(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 5)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    support, _ = staff(runtime, Role.SUPPORT, 2)
    finance, _ = staff(runtime, Role.FINANCE, 3)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=8800))
    subscriber = register_and_verify(client, runtime, 1)
    return {
        "subscriber": subscriber,
        "account_id": subscriber["account"]["id"],
        "phones": {"admin": admin.phone, "support": support.phone, "finance": finance.phone},
        "ids": {"admin": admin.id, "support": support.id, "finance": finance.id},
    }


def browser(client: TestClient, runtime: Runtime, phone: str) -> TestClient:
    """A browser of its own (its own cookies), logged in through the login form."""
    own = TestClient(client.app, base_url="http://127.0.0.1")
    page = own.get("/login")
    assert page.status_code == 200, page.text
    done = own.post(
        "/login",
        data={"phone": phone, "password": PASSWORD, "csrf_token": field(page.text, "csrf_token"), "next": "/"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return own


def csrf(runtime: Runtime, browser: TestClient) -> str:
    """The CSRF token the session's forms carry (derived from the session, as the server derives it)."""
    session = session_signer(runtime).unsign(browser.cookies[SESSION_COOKIE]).decode()
    return csrf_token(runtime, session)


def field(page: str, name: str) -> str:
    found = re.findall(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no field {name}"
    return html.unescape(found[0])


def text(page: str) -> str:
    """The page's visible text, tags dropped and whitespace squeezed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def count(runtime: Runtime, table: type[Any], *where: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def plan_form(token: str, **overrides: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf_token": token,
        "code": "voice-88",
        "kind": "plan",
        "name_en": "Voice 88",
        "name_zh_Hant": "通話 88",
        "name_zh_Hans": "通话 88",
        "description_en": "Local minutes and data for 30 days.",
        "description_zh_Hant": "30日本地通話及數據。",
        "description_zh_Hans": "30天本地通话及数据。",
        "price": "88.50",
        "validity_count": "30",
        "validity_unit": "days",
        "voice_initial_increment": "60",
        "voice_subsequent_increment": "60",
        "allowance_measure": ["voice_minutes", "data_gb", "sms"],
        "allowance_zone": ["HK", "HK", "HK"],
        "allowance_amount": ["1000", "5", ""],
    }
    form.update(overrides)
    return form


CONSOLE_PAGES = (
    "/console",
    "/console/subscribers?q=chan",
    "/console/subscribers/{account_id}",
    "/console/plans",
    "/console/plans/new",
    "/console/plans/monthly/edit",
    "/console/promotions",
    "/console/reconciliation",
    "/console/numbers",
    "/console/audit",
    "/console/deliveries",
    "/console/charging",
)


def test_a_subscriber_is_refused_every_console_page_and_action(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    anonymous = TestClient(client.app, base_url="http://127.0.0.1")
    assert anonymous.get("/console", follow_redirects=False).headers["location"] == "/login?next=/console"
    subscriber = browser(client, runtime, world["subscriber"]["phone"])
    token = csrf(runtime, subscriber)

    for path in CONSOLE_PAGES:
        response = subscriber.get(path.format(account_id=world["account_id"]), follow_redirects=False)
        assert response.status_code == 403, path

    posts = {
        "/console/plans": plan_form(token),
        "/console/plans/monthly/retire": {"csrf_token": token},
        f"/console/subscribers/{world['account_id']}/kyc": {"csrf_token": token, "decision": "verified"},
        "/console/numbers/import": {"csrf_token": token, "numbers": "+85251709999"},
        "/console/jobs/reconcile": {"csrf_token": token},
        "/console/promotions/1/deactivate": {"csrf_token": token},
        "/console/reconciliation/1/resolve": {"csrf_token": token, "action": "close", "reason": "mine"},
        "/console/orders/1/refund": {"csrf_token": token, "reason": "mine"},
    }
    for path, data in posts.items():
        assert subscriber.post(path, data=data, follow_redirects=False).status_code == 403, path
    assert count(runtime, Plan, Plan.code == "voice-88") == 0
    assert count(runtime, PoolNumber, PoolNumber.msisdn == "+85251709999") == 0
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(Plan.status).where(Plan.code == "monthly")).one() is PlanStatus.ACTIVE


def test_a_post_without_the_right_csrf_token_changes_nothing(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    admin = browser(client, runtime, world["phones"]["admin"])

    for token in ("", "forged"):
        response = admin.post("/console/plans", data=plan_form(token), follow_redirects=False)
        assert response.status_code == 403, token

    assert count(runtime, Plan, Plan.code == "voice-88") == 0


def test_support_finds_a_subscriber_sees_the_identity_masked_and_cannot_refund_or_edit_plans(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    subscriber = world["subscriber"]
    order = buy(client, runtime, clock, subscriber)
    support = browser(client, runtime, world["phones"]["support"])
    link = f'href="/console/subscribers/{world["account_id"]}"'
    line_digits = subscriber["line"]["msisdn"].removeprefix("+852")

    for query in (
        "+852 6100 0001",  # the account's phone, written as people write it
        "61000001",
        subscriber["line"]["msisdn_display"],  # the line's number
        line_digits[-5:],  # part of a number
        "chan tai",  # English name, any case
        "大文",  # Chinese name
    ):
        found = support.get("/console/subscribers", params={"q": query})
        assert found.status_code == 200, found.text
        assert link in found.text, query
    nothing = support.get("/console/subscribers", params={"q": "nobody-like-this"})
    assert link not in nothing.text and "No subscriber matches this search." in text(nothing.text)

    page = support.get(f"/console/subscribers/{world['account_id']}")

    assert page.status_code == 200, page.text
    with runtime.unit_of_work() as uow:
        account = uow.session.get(Account, world["account_id"])
        assert account is not None and account.person_id is not None
        person = uow.session.get(Person, account.person_id)
        assert person is not None
        masked = person.document_masked
    full = hkid(1)
    compact = full.replace("(", "").replace(")", "")
    assert masked in page.text and "*" in masked
    for shown in (page.text, support.get("/console/subscribers", params={"q": "chan"}).text):
        assert full not in shown and compact not in shown and compact[:7] not in shown
    assert "陳大文" in page.text and subscriber["line"]["msisdn_display"] in page.text
    assert f"#{order['id']}" in page.text and "HK$88.00" in page.text
    assert f'action="/console/orders/{order["id"]}/refund"' not in page.text  # support may not refund
    assert 'action="/console/subscribers/' in page.text  # but may review the identity

    token = csrf(runtime, support)
    refused = support.post(
        f"/console/orders/{order['id']}/refund", data={"csrf_token": token, "reason": "asked"}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert support.get("/console/plans/monthly/edit").status_code == 403
    assert support.get("/console/plans/new").status_code == 403
    edit = support.post(
        "/console/plans/monthly", data=plan_form(token, code="monthly", price="1.00"), follow_redirects=False
    )
    assert edit.status_code == 403
    assert support.get("/console/audit").status_code == 403 and support.get("/console/numbers").status_code == 403
    assert count(runtime, Refund) == 0
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(Plan.price_amount).where(Plan.code == "monthly")).one() == 8800
    plans = support.get("/console/plans")
    assert plans.status_code == 200 and "monthly" in plans.text and "/console/plans/monthly/edit" not in plans.text


def test_support_rejects_an_identity_only_with_a_reason(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    support = browser(client, runtime, world["phones"]["support"])
    path = f"/console/subscribers/{world['account_id']}/kyc"
    token = csrf(runtime, support)

    missing = support.post(path, data={"csrf_token": token, "decision": "rejected", "reason": "  "})

    assert missing.status_code == 422 and "A reason is required." in text(missing.text)
    assert count(runtime, AuditEntry, AuditEntry.action == "kyc.reviewed") == 0

    done = support.post(path, data={"csrf_token": token, "decision": "rejected", "reason": "The scan is blurred"})

    assert done.status_code == 200 and "The identity is rejected" in text(done.text)
    assert "The scan is blurred" in done.text
    with runtime.unit_of_work() as uow:
        [entry] = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "kyc.reviewed")).all()
        assert entry.actor_id == world["ids"]["support"] and entry.detail["reason"] == "The scan is blurred"
        assert uow.session.scalars(select(Person.kyc_status)).one() is KycStatus.REJECTED


def test_finance_refunds_an_order_and_the_audit_log_shows_it(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    order = buy(client, runtime, clock, world["subscriber"])
    finance = browser(client, runtime, world["phones"]["finance"])
    page = finance.get(f"/console/subscribers/{world['account_id']}")
    assert f'action="/console/orders/{order["id"]}/refund"' in page.text
    path = f"/console/orders/{order['id']}/refund"
    token = field(page.text, "csrf_token")

    no_reason = finance.post(path, data={"csrf_token": token, "amount": "20.00", "reason": ""})
    too_much = finance.post(path, data={"csrf_token": token, "amount": "88.01", "reason": "goodwill"})
    not_money = finance.post(path, data={"csrf_token": token, "amount": "20.001", "reason": "goodwill"})

    assert no_reason.status_code == 422 and "A reason is required." in text(no_reason.text)
    assert too_much.status_code == 422 and not_money.status_code == 422
    assert "Enter an amount in Hong Kong dollars" in text(not_money.text)
    assert count(runtime, Refund) == 0

    done = finance.post(path, data={"csrf_token": token, "amount": "20.00", "reason": "goodwill: slow data"})

    assert done.status_code == 200, done.text
    assert "The refund was made to the original payment method" in text(done.text)
    with runtime.unit_of_work() as uow:
        [refund] = uow.session.scalars(select(Refund)).all()
        assert (refund.amount, refund.status, refund.actor_id) == (2000, "succeeded", world["ids"]["finance"])
        refunded = uow.session.get(Order, order["id"])
        assert refunded is not None
        assert refunded.status is OrderStatus.PARTIALLY_REFUNDED and refunded.refunded_amount == 2000

    admin = browser(client, runtime, world["phones"]["admin"])
    audit = admin.get("/console/audit")
    assert audit.status_code == 200
    shown = text(audit.text)
    assert f"HK$20.00 of Order #{order['id']} refunded to the original payment method." in shown
    assert "goodwill: slow data" in shown and "2000" not in shown
    assert "+852 5100 0003" in shown  # who: the finance staff member


def test_admin_creates_edits_and_retires_a_plan_with_a_price_in_dollars(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    admin = browser(client, runtime, world["phones"]["admin"])
    form = admin.get("/console/plans/new")
    assert form.status_code == 200
    token = field(form.text, "csrf_token")

    bad = admin.post("/console/plans", data=plan_form(token, price="88.505"))
    assert bad.status_code == 422 and "Enter an amount in Hong Kong dollars" in text(bad.text)
    assert 'value="Voice 88"' in bad.text  # what was typed is kept
    assert count(runtime, Plan, Plan.code == "voice-88") == 0

    created = admin.post("/console/plans", data=plan_form(token))

    assert created.status_code == 200 and "The plan was created." in text(created.text)
    with runtime.unit_of_work() as uow:
        plan = uow.session.scalars(select(Plan).where(Plan.code == "voice-88")).one()
        assert (plan.price_amount, plan.currency, plan.validity_days) == (8850, "HKD", 30)
        assert (plan.voice_initial_increment, plan.voice_subsequent_increment) == (60, 60)
        assert plan.names == {"en": "Voice 88", "zh_Hant": "通話 88", "zh_Hans": "通话 88"}
        allowances = {
            (a.unit, a.zone, a.amount)
            for a in uow.session.scalars(select(PlanAllowance).where(PlanAllowance.plan_id == plan.id))
        }
        assert allowances == {(Unit.VOICE_SECONDS, Zone.HK, 60_000), (Unit.DATA_BYTES, Zone.HK, 5 * 1024**3)}
    assert "HK$88.50" in created.text

    edit = admin.get("/console/plans/voice-88/edit")
    assert 'value="88.50"' in edit.text and 'value="1000"' in edit.text and 'value="5"' in edit.text
    assert 'name="voice_initial_increment" type="number" min="1" max="3600" step="1" value="60"' in edit.text
    no_block = admin.post("/console/plans/voice-88", data=plan_form(token, voice_subsequent_increment="0"))
    assert no_block.status_code == 422 and 'value="0"' in no_block.text
    updated = admin.post(
        "/console/plans/voice-88",
        data=plan_form(
            token,
            price="99",
            validity_count="1",
            validity_unit="months",
            voice_initial_increment="30",
            voice_subsequent_increment="6",
        ),
    )
    assert updated.status_code == 200 and "The plan was updated." in text(updated.text)
    retired = admin.post("/console/plans/voice-88/retire", data={"csrf_token": token})
    assert retired.status_code == 200
    with runtime.unit_of_work() as uow:
        plan = uow.session.scalars(select(Plan).where(Plan.code == "voice-88")).one()
        assert (plan.price_amount, plan.validity_months, plan.status) == (9900, 1, PlanStatus.RETIRED)
        assert (plan.voice_initial_increment, plan.voice_subsequent_increment) == (30, 6)
    actions = [a for (a,) in runtime_audit(runtime, "plan:voice-88")]
    assert actions == ["plan.created", "plan.updated", "plan.retired"]


def runtime_audit(runtime: Runtime, target: str) -> list[tuple[str]]:
    with runtime.unit_of_work() as uow:
        return [
            tuple(r)
            for r in uow.session.execute(
                select(AuditEntry.action).where(AuditEntry.target == target).order_by(AuditEntry.id)
            ).all()
        ]


def test_admin_creates_and_deactivates_a_promotion(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    admin = browser(client, runtime, world["phones"]["admin"])
    page = admin.get("/console/promotions")
    token = field(page.text, "csrf_token")
    form = {
        "csrf_token": token,
        "name_en": "Ten off",
        "name_zh_Hant": "減十元",
        "name_zh_Hans": "减十元",
        "kind": "amount_off",
        "amount_off": "10.00",
        "code": "ten-off",
        "plan_codes": ["monthly"],
        "starts_at": "2026-11-24T10:00",
        "ends_at": "2026-12-31T23:59",
        "max_uses": "100",
        "bonus_measure": ["data_gb", "data_gb"],
        "bonus_zone": ["HK", "HK"],
        "bonus_amount": ["", ""],
    }

    bad_code = admin.post("/console/promotions", data={**form, "code": "no spaces!"})
    assert bad_code.status_code == 422 and count(runtime, Promotion) == 0

    created = admin.post("/console/promotions", data=form)

    assert created.status_code == 200 and "The promotion was created." in text(created.text)
    with runtime.unit_of_work() as uow:
        promotion = uow.session.scalars(select(Promotion)).one()
        assert (promotion.code, promotion.amount_off, promotion.plan_codes) == ("TEN-OFF", 1000, ["monthly"])
        assert promotion.starts_at == clock.now()  # 10:00 in Hong Kong
    deactivated = admin.post(f"/console/promotions/{promotion.id}/deactivate", data={"csrf_token": token})
    assert deactivated.status_code == 200
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(Promotion.active)).one() is False
    assert [a for (a,) in runtime_audit(runtime, f"promotion:{promotion.id}")] == [
        "promotion.created",
        "promotion.deactivated",
    ]
    support = browser(client, runtime, world["phones"]["support"])
    assert support.get("/console/promotions").status_code == 200
    assert support.post("/console/promotions", data=form, follow_redirects=False).status_code == 403


def test_a_mismatch_case_is_closed_only_with_a_reason(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    order = place_order(client, world["subscriber"]).json()
    body, headers = sandbox_event(runtime, "payment.succeeded", sandbox_ref(order), "succeeded", 100)
    assert client.post("/api/v1/webhooks/sandbox", content=body, headers=headers).status_code == 200
    with runtime.unit_of_work() as uow:
        case_id = uow.session.scalars(select(Ticket.id).where(Ticket.status == "open")).one()
    support = browser(client, runtime, world["phones"]["support"])
    page = support.get("/console/reconciliation")
    assert page.status_code == 200
    assert "Amount mismatch" in text(page.text) and f'action="/console/reconciliation/{case_id}/resolve"' in page.text
    assert 'value="refund"' not in page.text  # support cannot refund
    finance_page = browser(client, runtime, world["phones"]["finance"]).get("/console/reconciliation")
    assert 'value="refund"' in finance_page.text  # finance may give back what was captured
    token = field(page.text, "csrf_token")
    path = f"/console/reconciliation/{case_id}/resolve"

    missing = support.post(path, data={"csrf_token": token, "action": "close", "reason": "   "})
    refund = support.post(path, data={"csrf_token": token, "action": "refund", "reason": "asked for it"})

    assert missing.status_code == 422 and "A reason is required." in text(missing.text)
    assert refund.status_code == 403
    with runtime.unit_of_work() as uow:
        ticket = uow.session.get(Ticket, case_id)
        assert ticket is not None and (ticket.status, ticket.resolution) == ("open", None)
    assert runtime_audit(runtime, f"ticket:{case_id}") == []

    done = support.post(path, data={"csrf_token": token, "action": "close", "reason": "HK$1 test charge, voided"})

    assert done.status_code == 200, done.text
    assert "The case was closed." in text(done.text) and "close: HK$1 test charge, voided" in text(done.text)
    with runtime.unit_of_work() as uow:
        ticket = uow.session.get(Ticket, case_id)
        assert ticket is not None and ticket.status == "resolved" and ticket.resolved_by == world["ids"]["support"]
    assert sorted(a for (a,) in runtime_audit(runtime, f"ticket:{case_id}")) == [
        "reconciliation.close",
        "ticket.resolved",
    ]
    again = support.post(path, data={"csrf_token": token, "action": "close", "reason": "once more"})
    assert again.status_code == 409 and "already resolved" in text(again.text)
    with runtime.unit_of_work() as uow:
        ticket = uow.session.get(Ticket, case_id)
        assert ticket is not None and ticket.resolution == "close: HK$1 test charge, voided"


def test_admin_runs_reconciliation_and_a_lost_webhook_is_applied(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    order = place_order(client, world["subscriber"]).json()
    assert pay_on_sandbox(client, order, card=LOSE_WEBHOOK).status_code == 303
    assert deliver(runtime, client, clock) == 0  # the webhook is lost
    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))
    admin = browser(client, runtime, world["phones"]["admin"])
    page = admin.get("/console/reconciliation")
    assert 'action="/console/jobs/reconcile"' in page.text
    support = browser(client, runtime, world["phones"]["support"])
    assert 'action="/console/jobs/reconcile"' not in support.get("/console/reconciliation").text
    refused = support.post("/console/jobs/reconcile", data={"csrf_token": csrf(runtime, support)})
    assert refused.status_code == 403

    ran = admin.post("/console/jobs/reconcile", data={"csrf_token": field(page.text, "csrf_token")})

    assert ran.status_code == 200
    assert "Reconciliation ran: 1 applied, 0 expired, 0 refunded, 0 could not be checked." in text(ran.text)
    assert f"Order {order['id']} applied by reconciliation" in text(ran.text)  # under "Recently resolved"
    with runtime.unit_of_work() as uow:
        applied = uow.session.get(Order, order["id"])
        assert applied is not None and applied.status is OrderStatus.FULFILLED
        [entry] = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "job.run")).all()
        assert entry.actor_id == world["ids"]["admin"] and entry.detail["applied"] == 1


def test_admin_imports_numbers_all_or_nothing(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> None:
    admin = browser(client, runtime, world["phones"]["admin"])
    page = admin.get("/console/numbers")
    assert page.status_code == 200
    token = field(page.text, "csrf_token")
    before = count(runtime, PoolNumber)

    bad = admin.post("/console/numbers/import", data={"csrf_token": token, "numbers": "+852 5170 0100\n12"})
    assert bad.status_code == 422 and count(runtime, PoolNumber) == before

    done = admin.post(
        "/console/numbers/import", data={"csrf_token": token, "numbers": "+852 5170 0100\n51700101, +85251700000"}
    )

    assert done.status_code == 200
    assert "Imported: 2 added, 1 already in the pool." in text(done.text)
    assert count(runtime, PoolNumber) == before + 2
    assert [a for (a,) in runtime_audit(runtime, "pool")] == ["numbers.imported"]


def test_the_dashboard_draws_its_charts_on_the_server_without_inline_styles(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    buy(client, runtime, clock, world["subscriber"])
    for role in ("support", "finance", "admin"):
        page = browser(client, runtime, world["phones"][role]).get("/console")
        assert page.status_code == 200, page.text
        assert '<svg class="chart"' in page.text and 'class="bar-money"' in page.text
        assert 'class="bar-voice"' in page.text and 'class="bar-data"' in page.text
        assert "style=" not in page.text and "<script>" not in page.text
        assert "HK$88.00" in text(page.text)  # revenue of the last 30 days
        assert ("Number pool" in text(page.text)) is (role == "admin")


def test_the_subscriber_page_shows_what_the_network_has_reserved(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    buy(client, runtime, clock, world["subscriber"])
    msisdn = world["subscriber"]["line"]["msisdn"]

    def credit(number: int, kind: quota.RequestType, **units: Any) -> quota.CreditAnswer:
        request = quota.CreditRequest("pgw1;4711", number, kind, msisdn, UsageKind.DATA, **units)
        with runtime.unit_of_work() as uow:
            return quota.handle(uow, request)

    assert credit(0, quota.RequestType.INITIAL, requested=1_000_000).granted == 1_000_000
    support = browser(client, runtime, world["phones"]["support"])
    path = f"/console/subscribers/{world['account_id']}"

    during = text(support.get(path).text)
    credit(1, quota.RequestType.TERMINATE, used=250_000)
    after = text(support.get(path).text)

    assert "Network sessions" in during and "pgw1;4711" in during
    assert "Data, bytes · Hong Kong 1,000,000 bytes" in during
    assert "pgw1;4711" not in after and "No session in progress." in after


def test_a_case_reads_in_the_staff_members_language(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    """Cases are stored as a topic and values, so a zh_Hant reader sees them in zh_Hant, with
    money formatted, and an English reader in English."""
    order = place_order(client, world["subscriber"]).json()
    body, headers = sandbox_event(runtime, "payment.succeeded", sandbox_ref(order), "succeeded", 100)
    assert client.post("/api/v1/webhooks/sandbox", content=body, headers=headers).status_code == 200
    payment_id = order["payments"][0]["id"]
    support = browser(client, runtime, world["phones"]["support"])

    english = text(support.get("/console/reconciliation").text)
    token = csrf(runtime, support)
    switched = support.post("/language", data={"language": "zh_Hant", "csrf_token": token, "next": "/console"})
    assert switched.status_code == 200
    chinese = text(support.get("/console/reconciliation").text)
    listed = text(support.get(f"/console/subscribers/{world['account_id']}").text)

    expected = "HK$88.00"
    assert f"Payment {payment_id} captured a different amount" in english
    assert f"Order {order['id']} expects {expected}; Sandbox captured HK$1.00." in english
    assert f"付款 {payment_id} 收取的金額不符" in chinese
    assert f"訂單 {order['id']} 應收 {expected}；測試環境 實收 HK$1.00。" in chinese
    assert "captured a different amount" not in chinese
    assert f"付款 {payment_id} 收取的金額不符" in listed


def test_console_pages_are_translated(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    buy(client, runtime, clock, world["subscriber"])
    admin = browser(client, runtime, world["phones"]["admin"])
    for language in ("zh_Hant", "zh_Hans"):
        token = csrf(runtime, admin)
        switched = admin.post(
            "/language", data={"language": language, "csrf_token": token, "next": "/console"}, follow_redirects=False
        )
        assert switched.status_code == 303
        missing: set[tuple[str, str]] = set()
        monkeypatch.setattr(rendering, "missing_translations", missing)
        for path in CONSOLE_PAGES:
            response = admin.get(path.format(account_id=world["account_id"]))
            assert response.status_code == 200, path
        assert missing == set()
