"""Support tickets: who opened one, and where it stands."""

from __future__ import annotations

from enum import StrEnum


class TicketKind(StrEnum):
    SUBSCRIBER = "subscriber"  # a subscriber's question
    # Cases Duckline opens for staff: what reconciliation handled or could not, money that does
    # not match its order.
    RECONCILIATION = "reconciliation"
    PAYMENT_MISMATCH = "payment_mismatch"


class TicketStatus(StrEnum):
    OPEN = "open"
    WAITING = "waiting"  # for the subscriber's answer
    RESOLVED = "resolved"  # the desk calls it closed


class LinkTarget(StrEnum):
    """What staff can link a ticket to."""

    ORDER = "order"
    PAYMENT = "payment"
    CASE = "case"  # another ticket, of a case kind
