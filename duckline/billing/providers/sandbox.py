"""Duckline's built-in sandbox provider: it plays the provider's side, for the demo and tests.

Like a real provider it has a hosted payment page (served under /sandbox by the web app),
keeps its own state (tables sandbox_*), confirms payments later by an HMAC-signed webhook
(Stripe-style `t=…,v1=…` header), can deliver a webhook twice, and answers status queries.
Its dashboard can refund a payment behind Duckline's back (`refund_in_dashboard`), as a
merchant can at any real provider.
Test cards decide the outcome; only the brand and last four digits are kept:

    4242 4242 4242 4242   succeeds
    4000 0000 0000 0002   declined
    4000 0025 0000 3155   needs a second step (3-D Secure page) before it succeeds or fails
    4000 0000 0000 0077   succeeds, but the webhook is lost (only a status query finds it)
    4000 0000 0000 0119   stays processing: no answer until the payment times out
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictInt, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from duckline.billing.models import SandboxPayment, SandboxWebhook
from duckline.billing.order_states import PaymentMethod, PaymentStatus
from duckline.billing.providers import (
    InvalidSignature,
    MalformedWebhook,
    PaymentRequest,
    ProviderError,
    ProviderPayment,
    RefundResult,
    WebhookAck,
    WebhookNotice,
)
from duckline.core.clock import Clock
from duckline.core.money import Money
from duckline.core.signing import sign
from duckline.db.engine import Database
from duckline.messaging import delivery

SIGNATURE_HEADER = "duckline-sandbox-signature"
TOLERANCE_SECONDS = 300


class _EventRefund(BaseModel):
    """The one refund a refund event is about (see `_queue`)."""

    id: StrictInt | str | None = None
    amount: StrictInt = Field(ge=0, le=10**12)
    reference: str | None = Field(default=None, max_length=100)


class _EventData(BaseModel):
    """What the sandbox sends about a payment (see `_data`), each value as the tables can hold it."""

    ref: str = Field(min_length=1, max_length=100)
    reference: str | None = Field(default=None, max_length=100)  # ours, as Duckline sent it
    status: Literal[
        "requires_payment", "processing", "requires_action", "succeeded", "declined", "cancelled", "refunded"
    ]
    amount: StrictInt = Field(ge=0, le=10**12)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    refunded: StrictInt = Field(ge=0, le=10**12)
    brand: str | None = Field(default=None, max_length=20)
    last4: str | None = Field(default=None, pattern=r"^\d{4}$")
    saved_token: str | None = Field(default=None, max_length=200)
    failure_code: str | None = Field(default=None, max_length=60)
    refund: _EventRefund | None = None


class _Event(BaseModel):
    id: str = Field(min_length=1, max_length=120)
    type: str = Field(min_length=1, max_length=60)
    data: _EventData


@dataclass(frozen=True)
class TestCard:
    outcome: str  # succeed, decline, challenge, lose_webhook, hang
    brand: str = "visa"


# Every test card expires then (the hosted page asks for no expiry): saved cards show it.
TEST_CARD_EXPIRY = "12/2034"
TEST_CARDS = {
    "4242424242424242": TestCard("succeed"),
    "5555555555554444": TestCard("succeed", "mastercard"),
    "4000000000000002": TestCard("decline"),
    "4000002500003155": TestCard("challenge"),
    "4000000000000077": TestCard("lose_webhook"),
    "4000000000000119": TestCard("hang"),
}
_STATUS = {
    "requires_payment": PaymentStatus.PENDING,
    "processing": PaymentStatus.PENDING,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "succeeded": PaymentStatus.SUCCEEDED,
    "declined": PaymentStatus.FAILED,
    "cancelled": PaymentStatus.CANCELLED,
    "refunded": PaymentStatus.REFUNDED,
}


class SandboxProvider:
    name = "sandbox"
    methods = frozenset({PaymentMethod.SANDBOX, PaymentMethod.CARD, PaymentMethod.ALIPAY, PaymentMethod.WECHATPAY})
    lookup_lag = timedelta(0)  # its own tables: what it holds, it finds at once

    def __init__(
        self,
        db: Database,
        clock: Clock,
        webhook_secret: str,
        base_url: str,
        webhook_delay: timedelta = timedelta(seconds=1),
        duplicate_webhooks: bool = True,
    ) -> None:
        self.db, self.clock, self.secret, self.base_url = db, clock, webhook_secret, base_url.rstrip("/")
        self.webhook_delay, self.duplicate_webhooks = webhook_delay, duplicate_webhooks
        self.available = True  # tests switch it off to play an outage

    # --- the provider API, as Duckline calls it ---------------------------------------------

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        self._check_up()
        ref = _ref(request.reference)  # idempotent per reference
        with self.db.transaction() as session:
            # Insert-if-absent, as a real provider's idempotency key works: requests racing with
            # one reference make one payment (the others wait for it, then find it), charged once.
            insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert  # type: ignore[union-attr]
            created = session.scalars(
                insert(SandboxPayment)
                .values(
                    ref=ref,
                    reference=request.reference,
                    amount=request.amount.amount,
                    currency=request.amount.currency,
                    status="requires_payment",
                    refunded=0,
                    return_url=request.return_url,
                    created_at=self.clock.now(),
                )
                .on_conflict_do_nothing(index_elements=["ref"])
                .returning(SandboxPayment)
            ).one_or_none()
            # Made now (and ours until commit), or made by an earlier or racing request: read it.
            payment = created or self._payment(session, ref)
            if created is not None and request.saved_token:  # off-session: charge the saved card at once
                card = TEST_CARDS.get(request.saved_token.removeprefix("sbxtok_").split("_")[0])
                self._charge(session, payment, card or TestCard("decline"), request.saved_token[-4:])
            return self._view(payment)

    def query(self, provider_ref: str) -> ProviderPayment:
        self._check_up()
        with self.db.reads() as session:
            return self._view(self._payment(session, provider_ref))

    def find(self, reference: str) -> ProviderPayment | None:
        self._check_up()
        with self.db.reads() as session:
            payment = session.scalars(select(SandboxPayment).where(SandboxPayment.ref == _ref(reference))).first()
            return self._view(payment) if payment is not None else None

    def cancel(self, provider_ref: str) -> ProviderPayment:
        self._check_up()
        with self.db.transaction() as session:
            payment = self._payment(session, provider_ref, lock=True)
            if payment.status in ("requires_payment", "processing", "requires_action"):
                payment.status = "cancelled"  # its hosted page no longer takes a card
            return self._view(payment)

    def refund(self, provider_ref: str, amount: Money, refund_reference: str, reason: str) -> RefundResult:
        self._check_up()
        with self.db.transaction() as session:
            payment = self._payment(session, provider_ref, lock=True)
            done = session.scalars(select(SandboxWebhook).where(SandboxWebhook.event_id == f"evt_{refund_reference}"))
            if done.first() is not None:  # the same refund asked again
                return RefundResult(f"re_{refund_reference}", True)
            if payment.status not in ("succeeded", "refunded") or payment.refunded + amount.amount > payment.amount:
                return RefundResult(f"re_{refund_reference}", False, "nothing left to refund")
            self._refund(session, payment, amount.amount, f"re_{refund_reference}", refund_reference)
            return RefundResult(f"re_{refund_reference}", True)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        header = headers.get(SIGNATURE_HEADER, "")
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        try:
            timestamp = int(parts["t"])
        except (KeyError, ValueError) as exc:
            raise InvalidSignature("missing or malformed signature header") from exc
        if not hmac.compare_digest(sign(self.secret, body, timestamp), header):
            raise InvalidSignature("signature mismatch")
        if abs(self.clock.now().timestamp() - timestamp) > TOLERANCE_SECONDS:
            raise InvalidSignature("signature too old")
        try:
            event = _Event.model_validate_json(body)
        except ValidationError as exc:  # signed by someone with the key, yet not what we send
            raise MalformedWebhook(str(exc)) from exc
        data = event.data
        return WebhookNotice(
            event_id=event.id,
            event_type=event.type,
            provider_ref=data.ref,
            status=_STATUS[data.status]
            if event.type != "refund.succeeded" or data.status == "refunded"
            else PaymentStatus.SUCCEEDED,
            amount=data.amount,
            currency=data.currency,
            refunded_amount=data.refunded,
            payload=json.loads(body),
            card_brand=data.brand,
            card_last4=data.last4,
            failure_code=data.failure_code,
            saved_token=data.saved_token,
            card_expiry=TEST_CARD_EXPIRY if data.last4 else None,
            refund_reference=data.refund.reference if data.refund else None,
            reference=data.reference,
        )

    def ack(self) -> WebhookAck:
        return WebhookAck()

    # --- the provider's own side: hosted page and webhook sender --------------------------------

    def checkout_url(self, provider_ref: str) -> str:
        return f"{self.base_url}/sandbox/checkout/{provider_ref}"

    def pay(self, provider_ref: str, card_number: str, save: bool = False) -> str:
        """The payer submits the hosted page. Returns the page to go to next."""
        digits = "".join(c for c in card_number if c.isdigit())
        with self.db.transaction() as session:
            payment = self._payment(session, provider_ref, lock=True)
            if payment.status != "requires_payment":
                return self._after(payment)
            card = TEST_CARDS.get(digits, TestCard("decline"))
            payment.customer_token = f"sbxtok_{digits}_{secrets.token_hex(4)}{digits[-4:]}" if save else None
            self._charge(session, payment, card, digits[-4:])
            return self._after(payment)

    def authenticate(self, provider_ref: str, approve: bool) -> str:
        """The second step of a challenged card."""
        with self.db.transaction() as session:
            payment = self._payment(session, provider_ref, lock=True)
            if payment.status == "requires_action":
                payment.status = "succeeded" if approve else "declined"
                self._queue(session, payment, "payment.succeeded" if approve else "payment.failed")
            return self._after(payment)

    def refund_in_dashboard(self, provider_ref: str, amount: int, lose_webhook: bool = False) -> str:
        """The merchant refunds from the provider's dashboard, not through Duckline: the money goes
        back and a notification follows (or is lost), with no reference of Duckline's."""
        with self.db.transaction() as session:
            payment = self._payment(session, provider_ref, lock=True)
            if payment.status not in ("succeeded", "refunded") or not 0 < amount <= payment.amount - payment.refunded:
                raise ProviderError("nothing left to refund")
            refund_id = f"re_{secrets.token_hex(8)}"
            self._refund(session, payment, amount, refund_id, None, lost=lose_webhook)
            return refund_id

    def payment_page(self, provider_ref: str) -> SandboxPayment:
        with self.db.reads() as session:
            return self._payment(session, provider_ref)

    def deliver_due(self, post: Callable[[str, bytes, dict[str, str]], int], limit: int = 100) -> int:
        """Post the webhooks that are due (twice each when duplicates are on), through the same
        claim, send and record as Duckline's own outbox. Returns posts made."""
        copies = 2 if self.duplicate_webhooks else 1

        # Posted outside any transaction: the receiver writes to the same database. At least
        # once, like a real provider: a crash here means a repeat, which Duckline ignores.
        def send(hook: _Due) -> delivery.Outcome:
            body = json.dumps(hook.payload).encode()
            headers = {
                "content-type": "application/json",
                SIGNATURE_HEADER: sign(self.secret, body, int(self.clock.now().timestamp())),
            }
            answers = [post(f"{self.base_url}/api/v1/webhooks/sandbox", body, headers) for _ in range(copies)]
            taken = [code for code in answers if 200 <= code < 300]
            if taken:
                return delivery.Outcome("sent", status_code=taken[0], values={"deliveries": hook.deliveries + copies})
            # Nobody took it: due again after a back-off, like a provider's retry.
            return delivery.Outcome("error", f"answered {answers}", status_code=answers[-1] or None)

        tally = delivery.deliver(delivery.Store.of(self.db, self.clock), _QUEUE, send, limit)
        return tally.tried * copies

    # --- internals ----------------------------------------------------------------------------

    def _check_up(self) -> None:
        if not self.available:
            raise ProviderError("sandbox provider is switched off")

    def _charge(self, session: Any, payment: SandboxPayment, card: TestCard, last4: str) -> None:
        payment.card_brand, payment.card_last4 = card.brand, last4
        if card.outcome == "decline":
            payment.status = "declined"
            self._queue(session, payment, "payment.failed")
        elif card.outcome == "challenge":
            payment.status = "requires_action"
        elif card.outcome == "hang":
            payment.status = "processing"
        else:
            payment.status = "succeeded"
            self._queue(session, payment, "payment.succeeded", lost=card.outcome == "lose_webhook")

    def _refund(
        self,
        session: Any,
        payment: SandboxPayment,
        amount: int,
        refund_id: str,
        reference: str | None,
        lost: bool = False,
    ) -> None:
        payment.refunded += amount
        if payment.refunded == payment.amount:
            payment.status = "refunded"
        self._queue(
            session,
            payment,
            "refund.succeeded",
            event_id=f"evt_{reference}" if reference else None,
            lost=lost,
            refund={"id": refund_id, "amount": amount, "reference": reference},
        )

    def _queue(
        self,
        session: Any,
        payment: SandboxPayment,
        event_type: str,
        event_id: str | None = None,
        lost: bool = False,
        refund: dict[str, Any] | None = None,
    ) -> None:
        event_id = event_id or f"evt_{secrets.token_hex(10)}"
        data = self._data(payment) | ({"refund": refund} if refund else {})
        session.add(
            SandboxWebhook(
                event_id=event_id,
                payload={"id": event_id, "type": event_type, "created": int(time.time()), "data": data},
                deliveries=0,
                deliver_after=self.clock.now() + self.webhook_delay,
                lost=lost,
                status="lost" if lost else "pending",
                attempts=0,
                created_at=self.clock.now(),
            )
        )

    @staticmethod
    def _data(payment: SandboxPayment) -> dict[str, Any]:
        return {
            "ref": payment.ref,
            "reference": payment.reference,
            "status": payment.status,
            "amount": payment.amount,
            "currency": payment.currency,
            "refunded": payment.refunded,
            "brand": payment.card_brand,
            "last4": payment.card_last4,
            "saved_token": payment.customer_token,
            "failure_code": "card_declined" if payment.status == "declined" else None,
        }

    def _after(self, payment: SandboxPayment) -> str:
        if payment.status == "requires_action":
            return f"{self.base_url}/sandbox/checkout/{payment.ref}/authenticate"
        return payment.return_url or self.base_url

    @staticmethod
    def _payment(session: Any, ref: str, lock: bool = False) -> SandboxPayment:
        query = select(SandboxPayment).where(SandboxPayment.ref == ref)
        payment = session.scalars(query.with_for_update() if lock else query).first()
        if payment is None:
            raise ProviderError(f"no sandbox payment {ref}")
        return payment

    def _view(self, payment: SandboxPayment) -> ProviderPayment:
        status = _STATUS[payment.status]
        return ProviderPayment(
            provider_ref=payment.ref,
            status=status,
            amount=payment.amount,
            currency=payment.currency,
            next_action={"type": "redirect", "url": self.checkout_url(payment.ref)}
            if payment.status in ("requires_payment", "requires_action")
            else None,
            card_brand=payment.card_brand,
            card_last4=payment.card_last4,
            failure_code="card_declined" if payment.status == "declined" else None,
            failure_message="The card was declined." if payment.status == "declined" else None,
            saved_token=payment.customer_token,
            refunded_amount=payment.refunded,
            card_expiry=TEST_CARD_EXPIRY if payment.card_last4 else None,
        )


@dataclass(frozen=True)
class _Due:
    id: int
    attempts: int
    deliveries: int
    payload: dict[str, Any]


def _load(session: Session, ids: list[int]) -> list[_Due]:
    rows = session.scalars(select(SandboxWebhook).where(SandboxWebhook.id.in_(ids)).order_by(SandboxWebhook.id))
    return [_Due(row.id, row.attempts, row.deliveries, row.payload) for row in rows]


# A provider keeps trying for a while (Stripe: three days); the sandbox, about half an hour.
_QUEUE = delivery.Queue(
    subject="sandbox_webhook",
    table=SandboxWebhook,
    due_at=SandboxWebhook.deliver_after,
    waiting="pending",
    sent="delivered",
    order_by=(SandboxWebhook.id,),
    policy=delivery.Policy(
        max_attempts=30, base_delay=timedelta(seconds=1), max_delay=timedelta(minutes=1), lease=timedelta(seconds=30)
    ),
    load=_load,
)


def _ref(reference: str) -> str:
    """The sandbox's own id for the payment with this merchant reference."""
    return f"sbx_{hashlib.sha256(reference.encode()).hexdigest()[:20]}"
