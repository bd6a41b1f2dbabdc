"""Online charging: where a Diameter credit-control session stands."""

from __future__ import annotations

from enum import StrEnum


class CreditSessionStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    # Ended by Duckline, not by the network element (the line was suspended): it holds nothing and
    # is granted nothing more, but the units the element still reports as used are charged.
    ABORTED = "aborted"
