"""Online charging: where a Diameter credit-control session stands, and what the OCS asks of the
element that holds it."""

from __future__ import annotations

from enum import StrEnum


class CreditSessionStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    # Ended by Duckline, not by the network element (the line was suspended): it holds nothing and
    # is granted nothing more, but the units the element still reports as used are charged.
    ABORTED = "aborted"


class ClosedReason(StrEnum):
    """Why Duckline closed a session the element never terminated; a later request on it gets
    5002 DIAMETER_UNKNOWN_SESSION_ID (the session is gone), not 5012."""

    EXPIRED = "expired"  # no request for diameter_session_timeout_seconds: the reaper closed it
    UNKNOWN_TO_PEER = "unknown"  # the element answered our RAR/ASR with 5002


class SignalKind(StrEnum):
    """What the OCS asks the element owning a session (credit_session_signals)."""

    RAR = "rar"  # re-authorize: ask for quota again now (the line was renewed or topped up)
    ASR = "asr"  # abort: end the session (the line left service)


class SignalOutcome(StrEnum):
    ANSWERED = "answered"  # 2001
    UNKNOWN_SESSION = "unknown"  # 5002: the session was closed here too
    REFUSED = "refused"  # another Result-Code (kept in result_code)
    UNANSWERED = "unanswered"  # no answer, retried once: noted on the session
    NOT_CONNECTED = "no_peer"  # the element has no connection to us (or is not one of our peers)
    SKIPPED = "skipped"  # nothing to ask any more (a RAR for a session closed meanwhile)
