"""What staff read of online charging: the credit-control sessions still open, newest first, each
with its line and what it holds per rating group; filtered by a line's number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.accounts.phone import normalise_pool_number
from duckline.accounts.roles import CHARGING_READERS
from duckline.catalog.rules import Unit, Zone
from duckline.core import pagination
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions
from duckline.lines.models import Line
from duckline.usage.charging_states import CreditSessionStatus
from duckline.usage.models import CreditReservation, CreditSession

PAGE = 50


@dataclass(frozen=True)
class Reservation:
    rating_group: int  # -1: units asked outside any rating group
    unit: Unit
    zone: Zone
    reserved: int
    expires_at: datetime


@dataclass(frozen=True)
class OpenSession:
    id: int
    session_id: str  # the Diameter Session-Id
    line_id: int
    msisdn: str
    unit: Unit  # of the request that opened it
    opened_at: datetime
    last_request_at: datetime
    last_request_number: int
    expires_at: datetime
    expired: bool  # past its expiry: what it holds no longer counts, the next request settles it
    reservations: list[Reservation]  # by rating group


@dataclass(frozen=True)
class SessionPage:
    sessions: list[OpenSession]
    next_cursor: str | None


def open_sessions(
    transactions: Transactions, viewer: Account, msisdn: str = "", cursor: str | None = None, limit: int = PAGE
) -> SessionPage:
    """Open sessions, newest first (a page at a time), of one line when `msisdn` is given."""
    if viewer.role not in CHARGING_READERS:
        raise DomainError(ErrorCode.FORBIDDEN)
    limit = max(1, min(limit, pagination.MAX_LIMIT))
    query = (
        select(CreditSession, Line.msisdn)
        .join(Line, Line.id == CreditSession.line_id)
        .where(CreditSession.status == CreditSessionStatus.OPEN)
    )
    with transactions() as uow:
        if msisdn.strip():
            try:
                wanted = normalise_pool_number(msisdn.strip()[:30], uow.settings.default_region)
            except DomainError as error:
                raise DomainError(ErrorCode.VALIDATION_FAILED, field="msisdn") from error
            query = query.where(Line.msisdn == wanted)
        if cursor:
            query = query.where(CreditSession.id < pagination.decode_cursor(cursor))
        rows = uow.session.execute(query.order_by(CreditSession.id.desc()).limit(limit + 1)).all()
        more, rows = len(rows) > limit, rows[:limit]
        held: dict[int, list[Reservation]] = {}
        if rows:
            reservations = uow.session.scalars(
                select(CreditReservation)
                .where(CreditReservation.credit_session_id.in_([s.id for s, _ in rows]))
                .order_by(CreditReservation.rating_group)
            )
            for r in reservations:
                held.setdefault(r.credit_session_id, []).append(
                    Reservation(r.rating_group, r.unit, r.zone, r.reserved, r.expires_at)
                )
        now = uow.clock.now()
        sessions = [
            OpenSession(
                id=s.id,
                session_id=s.session_id,
                line_id=s.line_id,
                msisdn=number,
                unit=s.unit,
                opened_at=s.created_at,
                last_request_at=s.updated_at,
                last_request_number=s.last_request_number,
                expires_at=s.expires_at,
                expired=s.expires_at <= now,
                reservations=held.get(s.id, []),
            )
            for s, number in rows
        ]
    return SessionPage(sessions, pagination.encode_cursor(sessions[-1].id) if more else None)
