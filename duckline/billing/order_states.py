"""The order and payment lifecycles: one state machine each, asked by everything else."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from duckline.core.errors import DomainError, ErrorCode


class OrderKind(StrEnum):
    ACTIVATION = "activation"  # the first period of a pending line
    RENEWAL = "renewal"  # the same plan again
    CHANGE = "change"  # another plan, from the next period
    ADDON = "addon"  # a pack that tops up allowances, expiry unchanged


class OrderStatus(StrEnum):
    CREATED = "created"
    PAYMENT_PENDING = "payment_pending"
    PAID = "paid"
    FULFILLED = "fulfilled"
    FAILED = "failed"  # the last payment attempt failed; a new attempt may be made
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # nobody paid in time
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


_ORDER: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.CREATED: frozenset(
        {OrderStatus.PAYMENT_PENDING, OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
    ),
    OrderStatus.PAYMENT_PENDING: frozenset(
        {OrderStatus.PAID, OrderStatus.FAILED, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
    ),
    OrderStatus.FAILED: frozenset(
        {OrderStatus.PAYMENT_PENDING, OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
    ),
    # Money can arrive after we gave up waiting (a late webhook): it is taken, then applied or refunded.
    OrderStatus.CANCELLED: frozenset({OrderStatus.PAID}),
    OrderStatus.EXPIRED: frozenset({OrderStatus.PAID}),
    OrderStatus.PAID: frozenset({OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED}),
    OrderStatus.FULFILLED: frozenset({OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED}),
    OrderStatus.PARTIALLY_REFUNDED: frozenset({OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED}),
    OrderStatus.REFUNDED: frozenset(),
}

OPEN_FOR_PAYMENT = frozenset({OrderStatus.CREATED, OrderStatus.PAYMENT_PENDING, OrderStatus.FAILED})
# Orders whose amount counts against the spending limits (money taken or about to be).
COMMITTED_SPEND = frozenset(
    {
        OrderStatus.CREATED,
        OrderStatus.PAYMENT_PENDING,
        OrderStatus.PAID,
        OrderStatus.FULFILLED,
        OrderStatus.PARTIALLY_REFUNDED,
    }
)


# Orders that took money (it may since have gone back, in part or in full).
PAID_FOR = frozenset({OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})
# Orders whose money was taken and is held (less what was refunded): what the cap counts at capture.
CAPTURED = frozenset({OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED})
# Only fulfilment issues an order's receipt: an order in no other state has one.
MAY_HAVE_RECEIPT = frozenset({OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})


def lapsed(status: OrderStatus, pay_by: datetime, now: datetime) -> bool:
    """Still open for payment after its time to pay: the payer gave up (on the provider's page,
    say) and reconciliation has not expired it yet. Shown as not completed, no longer awaited."""
    return status in OPEN_FOR_PAYMENT and pay_by <= now


def check_order_transition(current: OrderStatus, target: OrderStatus) -> None:
    if target not in _ORDER[current]:
        raise DomainError(ErrorCode.ORDER_TRANSITION_NOT_ALLOWED, current=current.value, target=target.value)


class PaymentStatus(StrEnum):
    # Recorded (with our reference) before the provider is called; stays so until the provider's
    # answer is recorded. If the call timed out or the process died, money may have moved: only
    # the provider, asked by our reference, can say whether it did.
    UNKNOWN = "unknown"
    PENDING = "pending"  # created with the provider, waiting for the payer
    REQUIRES_ACTION = "requires_action"  # a second step (3-D Secure, wallet confirmation)
    SUCCEEDED = "succeeded"  # money captured
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"  # fully; partial refunds keep SUCCEEDED and count refunded_amount
    FLAGGED = "flagged"  # captured, but the amount or currency did not match the order


_PAYMENT: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.UNKNOWN: frozenset(set(PaymentStatus) - {PaymentStatus.UNKNOWN}),
    PaymentStatus.PENDING: frozenset(
        {
            PaymentStatus.REQUIRES_ACTION,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.FAILED,
            PaymentStatus.CANCELLED,
            PaymentStatus.FLAGGED,
            PaymentStatus.REFUNDED,
        }
    ),
    PaymentStatus.REQUIRES_ACTION: frozenset(
        {
            PaymentStatus.SUCCEEDED,
            PaymentStatus.FAILED,
            PaymentStatus.CANCELLED,
            PaymentStatus.FLAGGED,
            PaymentStatus.REFUNDED,
        }
    ),
    PaymentStatus.FAILED: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FLAGGED}),  # declined, then retried
    PaymentStatus.CANCELLED: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FLAGGED}),
    PaymentStatus.SUCCEEDED: frozenset({PaymentStatus.REFUNDED}),
    PaymentStatus.FLAGGED: frozenset({PaymentStatus.REFUNDED}),
    PaymentStatus.REFUNDED: frozenset(),
}


# Payments whose money may still move: they count against the spending limits, keep their order's
# promotion uses, and no new attempt starts beside an UNKNOWN one.
MAY_CAPTURE = frozenset({PaymentStatus.UNKNOWN, PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION})


def payment_can_become(current: PaymentStatus, target: PaymentStatus) -> bool:
    """False for a stale or repeated event (e.g. 'succeeded' after 'refunded'): ignore it."""
    return target in _PAYMENT[current]


class RefundStatus(StrEnum):
    PENDING = "pending"  # asked of the provider, no answer recorded yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ReceiptKind(StrEnum):
    RECEIPT = "receipt"  # for a fulfilled order
    CREDIT_NOTE = "credit_note"  # for a refund


class PaymentMethod(StrEnum):
    CARD = "card"
    ALIPAY = "alipay"
    WECHATPAY = "wechatpay"
    SANDBOX = "sandbox"


def held_amount(status: OrderStatus, total: int, refunded: int, captures: Iterable[tuple[int, int]]) -> int:
    """Money captured for an order beyond what the order keeps, not yet given back: a second
    capture for an order already paid, or a capture of the wrong amount. It is the subscriber's
    and must be refunded; it is never revenue. `captures` is (captured, refunded) per payment."""
    kept = total - refunded if status in PAID_FOR else 0
    return max(0, sum(max(0, captured - back) for captured, back in captures) - kept)
