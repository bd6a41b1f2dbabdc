"""Who may do what. Each staff action names the roles it needs; the web layer checks them."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    SUBSCRIBER = "subscriber"
    SUPPORT = "support"
    FINANCE = "finance"
    ADMIN = "admin"
    NETWORK = "network"  # machines: network elements reporting usage


STAFF = frozenset({Role.SUPPORT, Role.FINANCE, Role.ADMIN})
CATALOGUE_EDITORS = frozenset({Role.ADMIN})
NUMBER_POOL_MANAGERS = frozenset({Role.ADMIN})
LINE_OPERATORS = frozenset({Role.SUPPORT, Role.ADMIN})
KYC_REVIEWERS = frozenset({Role.SUPPORT, Role.ADMIN})
# Who reads the delivery attempts (did the SMS, the email, the webhook get through?).
DELIVERY_READERS = frozenset({Role.SUPPORT, Role.ADMIN})
# Who reads online charging's state (the Gy server's peers, the open credit-control sessions).
CHARGING_READERS = frozenset({Role.SUPPORT, Role.ADMIN})
USAGE_REPORTERS = frozenset({Role.NETWORK})


def may_see(role: Role, viewer_id: int, owner_id: int | None) -> bool:
    """A subscriber sees what is theirs; staff see everyone's. (Anything else answers as missing.)"""
    return role in STAFF or owner_id == viewer_id


class Caller(StrEnum):
    """The kinds of caller a route may be for: each route declares the ones it accepts."""

    ANONYMOUS = "anonymous"
    SUBSCRIBER = "subscriber"
    STAFF = "staff"
    NETWORK = "network"  # a network element's API key


def caller_of(role: Role | None) -> Caller:
    if role is None:
        return Caller.ANONYMOUS
    if role in STAFF:
        return Caller.STAFF
    return Caller.NETWORK if role is Role.NETWORK else Caller.SUBSCRIBER
