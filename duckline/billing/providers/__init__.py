"""Payment providers behind one small interface; `gateway.Payments` picks one per method.

Each provider lives in its own module (sandbox, stripe_card, alipay, wechatpay). The services
never see a provider's SDK; they see these types. No card number ever reaches Duckline: a
provider returns only its own references, the card brand and the last four digits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from duckline.billing.order_states import PaymentMethod, PaymentStatus
from duckline.core.money import Money


class InvalidSignature(Exception):
    """A webhook whose signature does not verify: answered 400, nothing else happens."""


class MalformedWebhook(Exception):
    """A webhook that verifies but whose content cannot be read: answered 400, nothing else happens."""


class ProviderError(Exception):
    """The provider could not be reached, did not answer in time, or refused the call; safe to
    retry. After a create, the outcome is unknown: the provider may have acted on the call."""


@dataclass(frozen=True)
class PaymentRequest:
    reference: str  # Duckline's own id for the attempt (Payment.reference); the provider's idempotency key
    amount: Money
    description: str
    method: PaymentMethod
    return_url: str  # where the payer's browser comes back to
    notify_url: str  # where the provider posts its webhook
    language: str = "en"
    saved_token: str | None = None  # a saved method, for off-session charges (auto-renew)
    save_method: bool = False  # ask the provider for a reusable token
    expires_at: datetime | None = None  # after this the provider must refuse the payment (wallets)


@dataclass(frozen=True)
class ProviderPayment:
    """What the provider says about one payment, after creating it or when asked."""

    provider_ref: str
    status: PaymentStatus
    amount: int  # what the provider holds for this payment (captured amount once succeeded)
    currency: str
    next_action: dict[str, Any] | None = None  # {"type": "redirect", "url": …} | {"type": "qr", …}
    card_brand: str | None = None
    card_last4: str | None = None
    wallet_account: str | None = None  # masked buyer account of a wallet
    failure_code: str | None = None
    failure_message: str | None = None
    saved_token: str | None = None
    refunded_amount: int = 0  # all that the payment has had refunded so far
    card_expiry: str | None = None  # "MM/YYYY" of the card, shown with a saved method


@dataclass(frozen=True)
class WebhookNotice:
    """A verified webhook, reduced to what Duckline acts on."""

    event_id: str  # unique per provider: replays are recognised by it
    event_type: str
    provider_ref: str  # the payment it is about
    status: PaymentStatus  # what the payment now is, per this event
    amount: int | None  # captured amount, to be checked against the order
    currency: str | None
    # All that the payment has had refunded so far, when the provider says (0 when it does not).
    refunded_amount: int = 0
    payload: dict[str, Any] = field(default_factory=dict)
    card_brand: str | None = None
    card_last4: str | None = None
    wallet_account: str | None = None
    failure_code: str | None = None
    saved_token: str | None = None
    card_expiry: str | None = None  # "MM/YYYY" of the card, shown with a saved method
    # A notice about one refund: the provider's id for it and its amount (a provider that reports
    # refunds one by one, without the total, names them so a repeat is recognised), and the
    # reference Duckline gave it when Duckline asked for it ("refund_<id>"); None for a refund
    # made elsewhere, e.g. in the provider's dashboard.
    refund_id: str | None = None
    refund_amount: int | None = None
    refund_reference: str | None = None
    reference: str | None = None  # our reference, as the provider echoes it: finds a payment whose
    # create answer Duckline never recorded (the process died, or the answer came too late)


@dataclass(frozen=True)
class RefundResult:
    provider_ref: str
    succeeded: bool
    failure_message: str | None = None


@dataclass(frozen=True)
class WebhookAck:
    """What the provider expects back when a notification was taken."""

    status_code: int = 200
    body: bytes = b'{"received": true}'
    media_type: str = "application/json"


class PaymentProvider(Protocol):
    name: str
    methods: frozenset[PaymentMethod]
    # How long a payment the provider made may stay invisible to `find` (a search index behind).
    lookup_lag: timedelta

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        """Start a payment. Calling it again with the same reference must not charge twice."""
        ...

    def query(self, provider_ref: str) -> ProviderPayment:
        """Ask the provider for the payment's current state (reconciliation, return URL)."""
        ...

    def find(self, reference: str) -> ProviderPayment | None:
        """The payment the provider holds under our reference, in its current state; None when it
        holds none. For a create whose answer never arrived; None is final only after `lookup_lag`."""
        ...

    def cancel(self, provider_ref: str) -> ProviderPayment:
        """Stop a payment that is not paid, so it can no longer be: where it stands afterwards
        (CANCELLED; SUCCEEDED if it was paid first; PENDING if the provider cannot stop it yet)."""
        ...

    def refund(self, provider_ref: str, amount: Money, refund_reference: str, reason: str) -> RefundResult:
        """Refund to the original method. Idempotent per refund_reference."""
        ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        """Verify the signature FIRST (raise InvalidSignature), then parse."""
        ...

    def ack(self) -> WebhookAck: ...


@runtime_checkable
class DetachesSavedMethods(Protocol):
    """A provider that can forget a saved method at its end (Stripe detaches the card from its
    customer), so a removed method can never be charged again, even with a leaked token."""

    def detach_saved(self, token: str) -> None:
        """Forget the saved method; one already forgotten is not an error. Raises ProviderError."""
        ...
