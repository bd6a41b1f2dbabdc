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
USAGE_REPORTERS = frozenset({Role.NETWORK})
