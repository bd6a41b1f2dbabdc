"""Renewals under real parallel transactions (threads released together, each with its own
connection): a payment confirmed twice at once, orders racing for a spending limit or a promo
code's last uses, receipts numbered by many fulfilments at once, two auto-renew schedulers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.billing import auto_renew, checkout, orders
from duckline.billing.models import AutoRenewAttempt, Order, OrderEvent, Receipt
from duckline.billing.order_states import OrderKind, OrderStatus, PaymentMethod
from duckline.billing.pricing import PromotionKind
from duckline.catalog import promotions
from duckline.catalog import service as catalog
from duckline.catalog.models import Promotion, PromotionRedemption
from duckline.catalog.rules import Validity
from duckline.core.clock import FrozenClock
from duckline.core.errors import DomainError, ErrorCode
from duckline.lines.models import Line
from duckline.messaging.models import DomainEvent
from duckline.runtime import Runtime
from duckline.usage.models import Bucket
from tests.billing.test_concurrency import in_parallel
from tests.factories import deliver, numbers, pay_on_sandbox, place_order, plan_input, register_and_verify, staff
from tests.provider_fakes import capture_webhooks

PRICE = 8800
RETURN_URL = "http://127.0.0.1:8000/api/v1/payments/{payment_id}/return"


def viewer(runtime: Runtime, account_id: int) -> Account:
    """The subscriber as their request's authentication reads them."""
    with runtime.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None
        return account


def setup_catalogue(runtime: Runtime, pool: int) -> None:
    numbers(runtime, pool)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=PRICE))
        catalog.create_plan(uow, admin, plan_input("max", price=runtime.settings.order_maximum))
        promotions.create(
            uow,
            admin,
            promotions.PromotionInput(
                name={"en": "HK$10 off", "zh_Hant": "減 10 港元", "zh_Hans": "减 10 港元"},
                kind=PromotionKind.AMOUNT_OFF,
                amount_off=1000,
                code="FIRST3",
                starts_at=uow.now(),
                max_uses=3,
            ),
        )


def subscribers(client: TestClient, runtime: Runtime, count: int) -> list[dict[str, Any]]:
    setup_catalogue(runtime, count)
    return [register_and_verify(client, runtime, n + 1) for n in range(count)]


def form(subscriber: dict[str, Any], plan: str, key: str, promo_code: str | None = None) -> orders.OrderForm:
    return orders.OrderForm(
        line_id=subscriber["line"]["id"],
        plan_code=plan,
        payment_method=PaymentMethod.CARD,
        promo_code=promo_code,
        idempotency_key=key,
        request_hash=key,
    )


def count(runtime: Runtime, table: type[Any], *where: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def no_errors(results: list[Any]) -> None:
    errors = [r for r in results if isinstance(r, DomainError)]
    assert errors == [], [e.error for e in errors]


# --- one payment, confirmed twice at once ---------------------------------------------------------


def test_return_url_and_webhook_confirming_at_once_fulfil_once(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    [subscriber] = subscribers(client, runtime, 1)
    line_id = subscriber["line"]["id"]
    expiries = []
    for round_ in range(4):  # the race, a few times over: an activation, then renewals
        order = place_order(client, subscriber).json()
        pay_on_sandbox(client, order)
        [(_, body, headers)] = capture_webhooks(runtime, clock)
        payment_id = order["payments"][0]["id"]

        def confirm(i: int, payment_id: int = payment_id, body: bytes = body, headers: dict[str, str] = headers) -> Any:
            if i == 0:
                return checkout.refresh(runtime, payment_id)  # the payer's browser is back on the return URL
            return checkout.handle_webhook(runtime, "sandbox", headers, body)  # the provider's notification

        no_errors(in_parallel(2, confirm))

        with runtime.unit_of_work() as uow:
            done = uow.session.get(Order, order["id"])
            assert done is not None and done.status is OrderStatus.FULFILLED
            assert uow.session.scalar(select(func.count()).where(Receipt.order_id == order["id"])) == 1
            assert (
                uow.session.scalar(
                    select(func.count()).where(
                        OrderEvent.order_id == order["id"], OrderEvent.to_status == OrderStatus.FULFILLED
                    )
                )
                == 1
            )
            line = uow.session.get(Line, line_id)
            assert line is not None and line.expires_at is not None
            expiries.append(line.expires_at)
        assert count(runtime, Receipt) == round_ + 1
        assert count(runtime, Bucket, Bucket.line_id == line_id) == 3 * (round_ + 1)  # one set of buckets each
        assert count(runtime, DomainEvent, DomainEvent.type == "renewal.succeeded") == round_ + 1

    assert [e.strftime("%Y-%m-%d") for e in expiries] == ["2026-12-24", "2027-01-24", "2027-02-24", "2027-03-24"]
    deliver(runtime, client, clock)  # nothing left for the sandbox to say that matters
    assert count(runtime, Receipt) == 4


# --- orders racing for limits -------------------------------------------------------------------


@pytest.mark.parametrize("racers", [2, 6])
def test_orders_for_one_line_racing_against_the_monthly_limit_create_one(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, racers: int
) -> None:
    [subscriber] = subscribers(client, runtime, 1)
    limit = runtime.settings.order_maximum + runtime.settings.order_maximum // 2  # room for one "max" order
    monkeypatch.setattr(runtime.settings, "monthly_line_limit", limit)
    account_id = subscriber["account"]["id"]

    def order(i: int) -> tuple[checkout.OrderState, bool]:
        chosen = form(subscriber, "max", f"race-{i}")
        return checkout.order_renewal(runtime, viewer(runtime, account_id), chosen, "en", RETURN_URL)

    results = in_parallel(racers, order)

    made = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(made) == 1 and made[0][1]
    assert [e.error for e in refused] == [ErrorCode.MONTHLY_LIMIT_REACHED] * (racers - 1)
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Order)) == 1
        assert orders.month_spend(uow, subscriber["line"]["id"]) == runtime.settings.order_maximum <= limit


def test_promo_code_with_three_uses_and_eight_orders_at_once(client: TestClient, runtime: Runtime) -> None:
    people = subscribers(client, runtime, 8)

    def order(i: int) -> tuple[checkout.OrderState, bool]:
        subscriber = people[i]
        chosen = form(subscriber, "monthly", f"promo-{i}", promo_code="first3")
        return checkout.order_renewal(runtime, viewer(runtime, subscriber["account"]["id"]), chosen, "en", RETURN_URL)

    results = in_parallel(8, order)

    made = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(made) == 3
    assert {e.error for e in refused} == {ErrorCode.PROMO_CODE_USED_UP} and len(refused) == 5
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(Promotion.uses)).one() == 3
        assert uow.session.scalars(select(PromotionRedemption.status)).all() == ["reserved"] * 3
        totals = uow.session.scalars(select(Order.total_amount)).all()
        assert sorted(totals) == [PRICE - 1000] * 3


# --- receipts ---------------------------------------------------------------------------------


def test_20_fulfilments_at_once_number_receipts_1_to_20(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    people = subscribers(client, runtime, 20)
    payment_ids = []
    for subscriber in people:
        order = place_order(client, subscriber).json()
        assert pay_on_sandbox(client, order).status_code == 303
        payment_ids.append(order["payments"][0]["id"])
    capture_webhooks(runtime, clock)  # taken, never posted: the return URLs confirm

    results = in_parallel(20, lambda i: checkout.refresh(runtime, payment_ids[i]))

    no_errors(results)
    with runtime.unit_of_work() as uow:
        receipts = uow.session.scalars(select(Receipt).where(Receipt.kind == "receipt")).all()
        assert sorted(r.number for r in receipts) == list(range(1, 21))  # no gap, no duplicate
        assert len({r.display_number for r in receipts}) == 20
        assert {r.series for r in receipts} == {"R2026"}
        assert len({r.order_id for r in receipts}) == 20
        statuses = uow.session.scalars(select(Order.status)).all()
        assert statuses == [OrderStatus.FULFILLED] * 20


# --- two auto-renew schedulers ----------------------------------------------------------------


def test_a_scheduler_with_a_stale_due_list_does_not_charge_a_renewed_line_again(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    """The interleaving two parallel schedulers produce, step by step with the job's own steps:
    B lists what is due, A renews the line, then B carries on with its list."""
    [subscriber] = subscribers(client, runtime, 1)
    order = place_order(client, subscriber, auto_renew=True).json()
    pay_on_sandbox(client, order, save=True)
    deliver(runtime, client, clock)
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, subscriber["line"]["id"])
        assert line is not None and line.auto_renew and line.expires_at is not None
        expiry = line.expires_at
    clock.set(expiry - timedelta(hours=runtime.settings.auto_renew_hours_before))

    due_for_b = auto_renew._due(runtime)  # scheduler B lists what is due
    assert due_for_b == [(line.id, 0)]
    assert auto_renew.run(runtime).renewed == [line.id]  # scheduler A renews the line meanwhile
    report = auto_renew.Report()
    for line_id, attempt in due_for_b:  # B carries on with its list
        auto_renew._attempt(runtime, line_id, attempt, report)

    assert count(runtime, Order, Order.kind == OrderKind.RENEWAL) == 1
    assert count(runtime, AutoRenewAttempt) == 1
    with runtime.unit_of_work() as uow:
        renewed = uow.session.get(Line, line.id)
        assert renewed is not None and renewed.expires_at == expiry.replace(year=2027, month=1)
