"""When the OCS must speak first to the element holding a credit-control session, and the
sessions no element ends.

Lines change in the web and worker processes; the Diameter connections are the OCS's (`duckline
ocs`). So a change that concerns a line's open sessions writes a signal row
(`credit_session_signals`, an outbox) in its own transaction, and the OCS polls for them, sends
each (`diameter.signals`) and records what came of it here:

* `reauthorize`: the line got new allowances (a renewal, a top-up): a RAR for each OPEN session,
  so the element asks again now rather than when its Validity-Time runs out;
* `abort`: the line left service (suspended, reported lost, past expiry, recycled): its OPEN
  sessions are ABORTED at once (nothing more is granted, their reservations are released, what
  the element still reports as used is charged, quota.ABORTED) and each gets an ASR;
* `claim` / `finish`: the OCS's side; a 5002 answer closes the session here too, no answer
  (after one retry) is noted on the session;
* `close_stale`: a session without a request for `diameter_session_timeout_seconds` (its element
  never sent CCR-TERMINATE) is closed and its reservations released, under the line's row lock
  as quota takes it; its next request gets 5002.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, text, update

from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.usage.charging_states import ClosedReason, CreditSessionStatus, SignalKind, SignalOutcome
from duckline.usage.models import CreditReservation, CreditSession, CreditSessionSignal

NOTIFY_CHANNEL = "credit_session_signals"
OPEN, CLOSED, ABORTED = CreditSessionStatus.OPEN, CreditSessionStatus.CLOSED, CreditSessionStatus.ABORTED


def reauthorize(uow: UnitOfWork, line_id: int) -> int:
    """A RAR for each open session of the line that is not already waiting for one (a RAR being
    sent may have been answered before this grant: that session gets another); how many."""
    waiting = select(CreditSessionSignal.credit_session_id).where(
        CreditSessionSignal.kind == SignalKind.RAR,
        CreditSessionSignal.finished_at.is_(None),
        CreditSessionSignal.claimed_until.is_(None),
    )
    ids = list(
        uow.session.scalars(
            select(CreditSession.id)
            .where(CreditSession.line_id == line_id, CreditSession.status == OPEN, CreditSession.id.not_in(waiting))
            .order_by(CreditSession.id)
        ).all()
    )
    _signal(uow, ids, SignalKind.RAR)
    return len(ids)


def abort(uow: UnitOfWork, line_id: int) -> int:
    """End the line's open sessions now (ABORTED, reservations released) and owe each an ASR;
    how many. The caller holds the line's row lock (quota takes it before reading a session);
    the statement checks the status again all the same (a CCR-T that closed one stays closed)."""
    now = uow.now()
    ids = list(
        uow.session.scalars(
            update(CreditSession)
            .where(CreditSession.line_id == line_id, CreditSession.status == OPEN)
            .values(status=ABORTED, reserved=0, expires_at=now, updated_at=now)
            .returning(CreditSession.id)
            .execution_options(synchronize_session=False)
        ).all()
    )
    if not ids:
        return 0
    _release(uow, ids)
    _signal(uow, ids, SignalKind.ASR)
    return len(ids)


@dataclass(frozen=True)
class Claim:
    """A signal an OCS is now sending: what the request needs."""

    signal_id: int
    kind: SignalKind
    session_id: str  # the Diameter Session-Id
    origin_host: str
    origin_realm: str


def claim(uow: UnitOfWork, limit: int, lease: timedelta) -> list[Claim]:
    """Up to `limit` signals to send, oldest first, each claimed for `lease` (past it, another
    poll may take it again: the OCS that had it is gone). Rows another OCS is claiming are skipped
    (PostgreSQL). A RAR for a session no longer open, or a session with no element recorded, is
    finished here without a request."""
    now = uow.now()
    rows = uow.session.execute(
        select(CreditSessionSignal, CreditSession)
        .join(CreditSession, CreditSession.id == CreditSessionSignal.credit_session_id)
        .where(
            CreditSessionSignal.finished_at.is_(None),
            or_(CreditSessionSignal.claimed_until.is_(None), CreditSessionSignal.claimed_until <= now),
        )
        .order_by(CreditSessionSignal.id)
        .limit(limit)
        .with_for_update(of=CreditSessionSignal, skip_locked=True)
    ).all()
    claimed = []
    for signal, session in rows:
        if signal.kind is SignalKind.RAR and session.status != OPEN:
            _finished(signal, now, SignalOutcome.SKIPPED)
        elif not session.origin_host or not session.origin_realm:
            _finished(signal, now, SignalOutcome.NOT_CONNECTED)
        else:
            signal.claimed_until = now + lease
            claimed.append(Claim(signal.id, signal.kind, session.session_id, session.origin_host, session.origin_realm))
    return claimed


def finish(
    uow: UnitOfWork,
    signal_id: int,
    outcome: SignalOutcome,
    *,
    result_code: int | None = None,
    attempts: int = 0,
    sent_at: datetime | None = None,
) -> None:
    """Record what came of a claimed signal. 5002 (the element does not know the session) closes
    it here too; no answer is noted on the session."""
    signal = uow.session.get(CreditSessionSignal, signal_id)
    if signal is None or signal.finished_at is not None:
        return
    now = uow.now()
    _finished(signal, now, outcome, result_code, attempts, sent_at)
    if outcome is SignalOutcome.UNKNOWN_SESSION:
        _close(uow, signal.credit_session_id, ClosedReason.UNKNOWN_TO_PEER)
    elif outcome is SignalOutcome.UNANSWERED:
        uow.session.execute(
            update(CreditSession).where(CreditSession.id == signal.credit_session_id).values(unanswered_at=now)
        )


def close_stale(uow: UnitOfWork, limit: int = 500) -> int:
    """Close open sessions without a request for `diameter_session_timeout_seconds`; how many.
    Each line is locked first, as quota locks it (one a request is being served on is skipped:
    the next round sees it), then its sessions are read again."""
    cutoff = uow.now() - timedelta(seconds=uow.settings.diameter_session_timeout_seconds)
    stale = uow.session.execute(
        select(CreditSession.id, CreditSession.line_id)
        .where(CreditSession.status == OPEN, CreditSession.updated_at < cutoff)
        .order_by(CreditSession.line_id, CreditSession.id)
        .limit(limit)
    ).all()
    by_line: dict[int, list[int]] = {}
    for session_id, line_id in stale:
        by_line.setdefault(line_id, []).append(session_id)
    closed = 0
    for line_id, ids in by_line.items():
        locked = uow.session.scalar(select(Line.id).where(Line.id == line_id).with_for_update(skip_locked=True))
        if locked is None:
            continue
        for session in _sessions(uow, ids):
            if session.status == OPEN and session.updated_at < cutoff:
                _close_locked(uow, session, ClosedReason.EXPIRED)
                closed += 1
    return closed


def _signal(uow: UnitOfWork, session_ids: Iterable[int], kind: SignalKind) -> None:
    now = uow.now()
    rows = [CreditSessionSignal(credit_session_id=i, kind=kind, created_at=now, attempts=0) for i in session_ids]
    if not rows:
        return
    uow.session.add_all(rows)
    if uow.session.get_bind().dialect.name == "postgresql":
        # Delivered at commit, to an OCS listening (diameter.signals): it polls at once.
        uow.session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


def _finished(
    signal: CreditSessionSignal,
    now: datetime,
    outcome: SignalOutcome,
    result_code: int | None = None,
    attempts: int = 0,
    sent_at: datetime | None = None,
) -> None:
    signal.finished_at, signal.outcome, signal.result_code = now, outcome, result_code
    signal.attempts, signal.sent_at, signal.claimed_until = attempts, sent_at, None


def _sessions(uow: UnitOfWork, ids: list[int]) -> list[CreditSession]:
    """The sessions as whoever held the line's lock before us left them."""
    return list(
        uow.session.scalars(
            select(CreditSession).where(CreditSession.id.in_(ids)).execution_options(populate_existing=True)
        ).all()
    )


def _close(uow: UnitOfWork, credit_session_id: int, reason: ClosedReason) -> None:
    line_id = uow.session.scalar(select(CreditSession.line_id).where(CreditSession.id == credit_session_id))
    if line_id is None:
        return
    uow.session.scalar(select(Line.id).where(Line.id == line_id).with_for_update())
    for session in _sessions(uow, [credit_session_id]):
        if session.status != CLOSED:
            _close_locked(uow, session, reason)


def _close_locked(uow: UnitOfWork, session: CreditSession, reason: ClosedReason) -> None:
    now = uow.now()
    session.status, session.closed_reason, session.reserved = CLOSED, reason, 0
    session.expires_at, session.updated_at = min(session.expires_at, now), now
    _release(uow, [session.id])


def _release(uow: UnitOfWork, session_ids: list[int]) -> None:
    """Give back what the sessions reserve: their reservation rows go (the table holds what is
    reserved now, as `credit_store` keeps it)."""
    uow.session.execute(
        delete(CreditReservation)
        .where(CreditReservation.credit_session_id.in_(session_ids))
        .execution_options(synchronize_session=False)
    )
