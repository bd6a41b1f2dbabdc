"""Online charging: a network element asks for quota before a call, an SMS or a data session, and
reports what was used (Diameter credit control, RFC 4006 / 3GPP Gy; the protocol lives in
duckline/diameter, this is what it means for balances).

A credit-control session reserves units from the line's buckets without spending them: what other
sessions may still reserve is what the buckets hold less what open sessions have reserved. Used
units are charged through `usage.ingest` under the record id "<session>#<request number>", so a
retransmitted request is charged once, by the same unique constraint that guards usage batches.
The line row is locked first (then, inside ingest, its buckets, by id), so two sessions of one
line asking at once are served one after the other and never both get the last units.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from sqlalchemy import func, select

from duckline.catalog.rules import Zone
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.lines.states import can_use_service
from duckline.usage import ingest as usage
from duckline.usage.charging_states import CreditSessionStatus
from duckline.usage.ingest import UsageInput, UsageKind
from duckline.usage.models import Bucket, CreditSession

SOURCE = "diameter"
OPEN, CLOSED, ABORTED = CreditSessionStatus.OPEN, CreditSessionStatus.CLOSED, CreditSessionStatus.ABORTED
_KINDS = {kind.unit: kind for kind in UsageKind}
RECORD_ID_MAX = 100  # usage_records.record_id


class RequestType(IntEnum):
    """CC-Request-Type (RFC 4006 8.3)."""

    INITIAL = 1
    UPDATE = 2
    TERMINATE = 3
    EVENT = 4


class ResultCode(IntEnum):
    """The Result-Code values a credit-control answer carries (RFC 6733 7.1, RFC 4006 9)."""

    SUCCESS = 2001
    END_USER_SERVICE_DENIED = 4010
    CREDIT_LIMIT_REACHED = 4012
    UNKNOWN_SESSION_ID = 5002
    UNABLE_TO_COMPLY = 5012
    USER_UNKNOWN = 5030


@dataclass(frozen=True)
class CreditRequest:
    """One credit-control request, as the network element means it.

    `requested` is the units it asks for next (None: the default quantum for the kind), or for an
    EVENT the units to debit now (None: one); `used` the units consumed since the previous request
    of the session (UPDATE and TERMINATE only).
    """

    session_id: str
    request_number: int
    request_type: RequestType
    msisdn: str | None  # E.164 with "+"; needed to open a session, not to continue one
    kind: UsageKind
    zone: Zone = Zone.HK
    requested: int | None = None
    used: int | None = None
    at: datetime | None = None  # when the usage happened (Event-Timestamp); default now


@dataclass(frozen=True)
class CreditAnswer:
    result_code: ResultCode
    granted: int | None = None  # units granted for the next stretch
    validity_seconds: int | None = None  # re-ask after this long (Validity-Time)
    final: bool = False  # the grant is all there is: end the service when it runs out


def handle(uow: UnitOfWork, request: CreditRequest) -> CreditAnswer:
    """Answer one request; a repeated one (same session and request number) gets the answer it
    got the first time and changes nothing."""
    if request.request_number < 0 or (request.requested or 0) < 0 or (request.used or 0) < 0:
        return CreditAnswer(ResultCode.UNABLE_TO_COMPLY)
    session = _session(uow, request.session_id)
    if session is not None:
        line = uow.session.get(Line, session.line_id, with_for_update=True)
    elif request.request_type in (RequestType.INITIAL, RequestType.EVENT) and request.msisdn:
        line = uow.session.scalars(select(Line).where(Line.msisdn == request.msisdn).with_for_update()).one_or_none()
    else:
        return CreditAnswer(ResultCode.UNKNOWN_SESSION_ID)
    if line is None:
        return CreditAnswer(ResultCode.USER_UNKNOWN)
    # The line row is locked now: read the session as whoever held the lock before us left it.
    session = _session(uow, request.session_id)
    if session is not None:
        if request.request_number == session.last_request_number:
            return _stored(session)
        if (
            request.request_number < session.last_request_number
            or session.status == CLOSED
            or request.request_type in (RequestType.INITIAL, RequestType.EVENT)
        ):
            return CreditAnswer(ResultCode.UNABLE_TO_COMPLY)
    elif request.request_type in (RequestType.UPDATE, RequestType.TERMINATE):
        return CreditAnswer(ResultCode.UNKNOWN_SESSION_ID)
    else:
        session = CreditSession(
            session_id=request.session_id,
            line_id=line.id,
            unit=request.kind.unit,
            zone=request.zone,
            status=OPEN,
            reserved=0,
            last_request_number=request.request_number,
            created_at=uow.now(),
            updated_at=uow.now(),
            expires_at=uow.now(),
        )
        uow.session.add(session)
    answer = _decide(uow, request, line, session)
    session.last_request_number = request.request_number
    session.last_answer = {k: (int(v) if isinstance(v, IntEnum) else v) for k, v in asdict(answer).items()}
    session.updated_at = uow.now()
    uow.session.flush()
    return answer


def _session(uow: UnitOfWork, session_id: str) -> CreditSession | None:
    return uow.session.scalars(
        select(CreditSession).where(CreditSession.session_id == session_id).execution_options(populate_existing=True)
    ).one_or_none()


def _decide(uow: UnitOfWork, request: CreditRequest, line: Line, session: CreditSession) -> CreditAnswer:
    settings = uow.settings
    if request.used and request.request_type in (RequestType.UPDATE, RequestType.TERMINATE):
        _charge(uow, request, line, session)
    session.reserved = 0  # what was reserved is now used (charged above) or given back
    if request.request_type is RequestType.TERMINATE:
        session.status = CLOSED
        return CreditAnswer(ResultCode.SUCCESS)
    if session.status == ABORTED or not can_use_service(line.status, line.suspension):
        if request.request_type is not RequestType.UPDATE:  # after an update the element ends it
            session.status = CLOSED
        return CreditAnswer(ResultCode.END_USER_SERVICE_DENIED)
    available = _available(uow, line.id, session)
    if request.request_type is RequestType.EVENT:
        session.status = CLOSED
        wanted = request.requested or 1
        if available < wanted:
            return CreditAnswer(ResultCode.CREDIT_LIMIT_REACHED)
        _charge(uow, request, line, session, wanted)
        return CreditAnswer(ResultCode.SUCCESS, granted=wanted)
    wanted = request.requested or settings.quota_default_units[_KINDS[session.unit].value]
    granted = min(wanted, available)
    if granted == 0:
        return CreditAnswer(ResultCode.CREDIT_LIMIT_REACHED)
    validity = settings.quota_validity_seconds
    session.reserved, session.expires_at = granted, uow.now() + timedelta(seconds=validity)
    return CreditAnswer(ResultCode.SUCCESS, granted=granted, validity_seconds=validity, final=granted < wanted)


def _available(uow: UnitOfWork, line_id: int, session: CreditSession) -> int:
    """What the line's usable buckets hold for the session's unit and zone, less what other open
    sessions have reserved and not yet reported (a reservation past its validity holds nothing)."""
    now = uow.now()
    held = uow.session.scalar(
        select(func.coalesce(func.sum(Bucket.remaining), 0)).where(
            Bucket.line_id == line_id,
            Bucket.unit == session.unit,
            Bucket.zone == session.zone,
            Bucket.valid_from <= now,
            Bucket.valid_until > now,
        )
    )
    reserved = uow.session.scalar(
        select(func.coalesce(func.sum(CreditSession.reserved), 0)).where(
            CreditSession.line_id == line_id,
            CreditSession.unit == session.unit,
            CreditSession.zone == session.zone,
            CreditSession.status == OPEN,
            CreditSession.expires_at > now,
            CreditSession.session_id != session.session_id,
        )
    )
    return max(0, int(held or 0) - int(reserved or 0))


def _charge(
    uow: UnitOfWork, request: CreditRequest, line: Line, session: CreditSession, quantity: int | None = None
) -> None:
    record = UsageInput(
        record_id=_record_id(request.session_id, request.request_number),
        msisdn=line.msisdn,
        kind=_KINDS[session.unit],
        zone=session.zone,
        quantity=quantity if quantity is not None else request.used or 0,
        started_at=request.at or uow.now(),
    )
    usage.ingest(uow, SOURCE, [record])


def _record_id(session_id: str, request_number: int) -> str:
    """The usage record id of one request: readable when it fits the column, else the session id's
    SHA-256 (RFC 6733 sets no length on a Session-Id)."""
    suffix = f"#{request_number}"
    if len(session_id) + len(suffix) <= RECORD_ID_MAX:
        return session_id + suffix
    return "sha256:" + hashlib.sha256(session_id.encode()).hexdigest() + suffix


def _stored(session: CreditSession) -> CreditAnswer:
    stored = dict(session.last_answer or {})
    return CreditAnswer(
        ResultCode(stored.get("result_code", ResultCode.UNABLE_TO_COMPLY)),
        stored.get("granted"),
        stored.get("validity_seconds"),
        bool(stored.get("final", False)),
    )
