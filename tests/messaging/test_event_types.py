"""Events are typed, and stored exactly as before: the same kind names and payload keys, which
integrators receive as their webhooks' `data`."""

from __future__ import annotations

from dataclasses import fields

import pytest

from duckline.messaging import event_types as events
from duckline.messaging.event_types import (
    AutoRenewFailed,
    EsimMoved,
    Event,
    LineExpired,
    LineGrace,
    LineRecycled,
    LineResumed,
    LineSuspended,
    PaymentFailed,
    PaymentUnconfirmed,
    RenewalRefunded,
    RenewalSucceeded,
)

EXAMPLES: list[Event] = [
    RenewalSucceeded(
        account_id=1,
        order_id=7,
        receipt="R-2026-000001",
        kind="renewal",
        msisdn="+85251700000",
        plan="hk-voice-30",
        amount=9800,
        currency="HKD",
        expires_at="2026-12-31T16:00:00+00:00",
    ),
    RenewalRefunded(account_id=1, order_id=7, amount=9800, currency="HKD", credit_note="C-2026-000001"),
    PaymentFailed(account_id=1, order_id=7, reason="card_declined", payment_id=3),
    PaymentUnconfirmed(account_id=1, order_id=None, payment_id=3),
    AutoRenewFailed(
        account_id=1, order_id=None, line_id=2, msisdn="+85251700000", attempt=2, final=False, reason="declined"
    ),
    LineGrace(account_id=1, line_id=2, msisdn="+85251700000", expires_at=None),
    LineExpired(account_id=1, line_id=2, msisdn="+85251700000", expires_at="2026-12-01T00:00:00+00:00"),
    LineRecycled(account_id=None, line_id=2, msisdn="+85251700000", expires_at=None),
    LineSuspended(account_id=1, line_id=2, reason="lost"),
    LineResumed(account_id=1, line_id=2, suspension="stolen"),
    EsimMoved(account_id=1, line_id=2, iccid="8985200000000000012"),
]

# What each kind stored (and sent to integrators) before events were classes: it must not change.
STORED_KEYS = {
    "renewal.succeeded": {"receipt", "kind", "msisdn", "plan", "amount", "currency", "expires_at"},
    "renewal.refunded": {"amount", "currency", "credit_note"},
    "payment.failed": {"reason", "payment_id"},
    "payment.unconfirmed": {"payment_id"},
    "auto_renew.failed": {"line_id", "msisdn", "attempt", "final", "reason"},
    "line.grace": {"line_id", "msisdn", "expires_at"},
    "line.expired": {"line_id", "msisdn", "expires_at"},
    "line.recycled": {"line_id", "msisdn", "expires_at"},
    "line.suspended": {"line_id", "reason"},
    "line.resumed": {"line_id", "suspension"},
    "line.esim_moved": {"line_id", "iccid"},
}


def test_every_kind_has_an_example_and_its_old_payload_keys() -> None:
    assert {e.event_type for e in EXAMPLES} == set(events.KINDS) == set(STORED_KEYS)
    for event in EXAMPLES:
        assert set(event.payload()) == STORED_KEYS[event.event_type], event.event_type


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.event_type)
def test_an_event_comes_back_from_what_is_stored(event: Event) -> None:
    again = events.from_stored(event.event_type, event.account_id, event.order_ref, event.payload())
    assert again == event and type(again) is type(event)


def test_account_and_order_are_columns_not_payload() -> None:
    refund = RenewalRefunded(account_id=4, order_id=9, amount=1, currency="HKD", credit_note="")
    assert refund.order_ref == 9 and "order_id" not in refund.payload() and "account_id" not in refund.payload()
    assert LineGrace(account_id=4, line_id=1, msisdn="+1", expires_at=None).order_ref is None


def test_a_stored_payload_with_a_key_the_class_does_not_know_still_reads() -> None:
    payload = {"line_id": 2, "reason": "lost", "added_later": True}
    assert events.from_stored("line.suspended", 1, None, payload) == LineSuspended(
        account_id=1, line_id=2, reason="lost"
    )


def test_events_are_immutable() -> None:
    event = EXAMPLES[0]
    with pytest.raises(AttributeError):
        event.account_id = 2  # type: ignore[misc]
    assert all(f.name != "event_type" for f in fields(event))


def test_integrators_may_still_subscribe_to_every_kind_ever_announced() -> None:
    announced = {*STORED_KEYS, "renewal.failed", "balance.low"}
    assert set(events.SUBSCRIBABLE) == announced
