"""Online charging: a network element asks for quota before a call, an SMS or a data session, and
reports what was used (Diameter credit control, RFC 4006 / 3GPP Gy; the protocol lives in
duckline/diameter, this is what it means for balances).

A request carries one or more *services*: the Multiple-Services-Credit-Control blocks of a Gy
request, each with a rating group that the catalogue maps to a unit (`catalog.rating`), or, in
plain RFC 4006, units at the top level in the kind the element named. Each service is rated,
granted and charged on its own and gets its own result: a rating group the catalogue does not
know gets 5031 RATING_FAILED while the others are served.

A credit-control session reserves units from the line's buckets without spending them, one
reservation per (session, rating group): what a service may still reserve is what the buckets
hold (its unit, the session's zone) less every other open reservation, those of the same
session's other rating groups included. Used units are charged through `usage.ingest` under the
record id "<session>#<request number>" ("…/<rating group>" for a service of a multi-service
request), so a retransmitted request is charged once, by the same unique constraint that guards
usage batches.

Requests are answered in batches (`handle_many`: what arrived together, in one transaction, as
if one after the other): `credit_store` locks their lines and reads their state, the rules here
decide each request in memory, then the store writes what changed and `usage.ingest` charges
every service's use in one usage batch. The line rows are locked first (then, inside ingest,
their buckets, by id), so two sessions of one line asking at once, in two batches or two server
processes, are served one after the other and never both get the last units.

Calls (Ro) are charged in the line's plan's increments (`catalog.voice_rating`): the seconds a
session reported used in all (`credit_sessions.seconds_used`) decide what each report costs, and
voice is granted in whole blocks, reserving what they cost. A session opened to an emergency
number (`emergency_numbers`, or marked so by the call server) is granted what it asks whatever
the line's state or balance, reserves nothing and is never charged: its reports write no usage
record (the session row, flagged `emergency`, keeps the seconds used).

A CCR-INITIAL that is not granted leaves its session closed (kept only for the answer a
retransmission gets again). A session Duckline closed itself (`usage.credit_signals`: no request
for too long, or its element said it does not know it) answers 5002 from then on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Any

from duckline.catalog.rules import Unit, Zone
from duckline.catalog.voice_rating import is_emergency
from duckline.core.unit_of_work import UnitOfWork
from duckline.usage import credit_store as store
from duckline.usage import ingest as usage
from duckline.usage.charging_states import CreditSessionStatus
from duckline.usage.credit_store import Batch, LineState, Reservation, Session
from duckline.usage.ingest import UsageInput, UsageKind

SOURCE = "diameter"
OPEN, CLOSED, ABORTED = CreditSessionStatus.OPEN, CreditSessionStatus.CLOSED, CreditSessionStatus.ABORTED
_KINDS = {kind.unit: kind for kind in UsageKind}
RECORD_ID_MAX = 100  # usage_records.record_id
NO_RATING_GROUP = -1  # the reservation of units asked outside any rating group (Unsigned32: never -1)


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
    RATING_FAILED = 5031


@dataclass(frozen=True)
class ServiceUnits:
    """One service of a request (a Multiple-Services-Credit-Control). `requested` and `used` hold
    the units the element put in Requested- and Used-Service-Unit by kind (a data session often
    reports its duration too); the rating group's unit says which one counts. `kind` is for a
    service without a rating group: the kind its units or the Service-Context-Id name."""

    rating_group: int | None
    service_identifier: int | None = None
    requested: dict[UsageKind, int] = field(default_factory=dict)
    used: dict[UsageKind, int] = field(default_factory=dict)
    kind: UsageKind | None = None


@dataclass(frozen=True)
class CreditRequest:
    """One credit-control request, as the network element means it.

    With `services` empty, the units are at the top level (plain RFC 4006) in `kind`:
    `requested` is the units it asks for next (None: the default quantum for the kind), or for an
    EVENT the units to debit now (None: one); `used` the units consumed since the previous request
    of the session (UPDATE and TERMINATE only). With `services`, each is answered on its own and
    `kind`, `requested` and `used` are not read.
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
    services: tuple[ServiceUnits, ...] = ()
    called_number: str | None = None  # Ro: the number called or texted, as dialled (its zone is `zone`)
    emergency: bool = False  # the call server marked it an emergency call (IMS-Emergency-Indicator)
    # The element asking (the CCR's Origin-Host and -Realm): kept on a session it opens, as where
    # the OCS's RAR or ASR for it goes.
    origin_host: str | None = None
    origin_realm: str | None = None


@dataclass(frozen=True)
class ServiceAnswer:
    """The answer to one service: echoes its rating group and service identifier; `kind` is the
    unit the grant is in (None when it was not rated)."""

    rating_group: int | None
    service_identifier: int | None
    result_code: ResultCode
    kind: UsageKind | None = None
    granted: int | None = None
    validity_seconds: int | None = None
    final: bool = False


@dataclass(frozen=True)
class CreditAnswer:
    """The answer to a request. With services, `result_code` is that of the request as a whole
    (2001 unless it could not be served at all) and each service has its own in `services`."""

    result_code: ResultCode
    granted: int | None = None  # units granted for the next stretch
    validity_seconds: int | None = None  # re-ask after this long (Validity-Time)
    final: bool = False  # the grant is all there is: end the service when it runs out
    services: tuple[ServiceAnswer, ...] = ()


@dataclass
class _Service:
    """A service being answered: its reservation key, the kind it is rated in (None: unrated)
    and its units in that kind."""

    asked: ServiceUnits | None  # None: the top-level units of a plain RFC 4006 request
    key: int
    kind: UsageKind | None
    requested: int | None
    used: int | None


def handle(uow: UnitOfWork, request: CreditRequest) -> CreditAnswer:
    """Answer one request; a repeated one (same session and request number) gets the answer it
    got the first time and changes nothing."""
    return handle_many(uow, [request])[0]


def handle_many(uow: UnitOfWork, requests: Sequence[CreditRequest]) -> list[CreditAnswer]:
    """Answer requests in one transaction, as if one after the other in the order given (the
    server gathers those that arrive together: a group commit). A fixed number of statements
    whatever the number of requests: the lines are locked (in id order, so two batches of the
    same lines wait for each other, never deadlock), their sessions, reservations and buckets
    read, every request decided in memory, then sessions, reservations and the usage they charge
    written in one statement each."""
    valid = [r for r in requests if _valid(r)]
    batch = store.read(
        uow,
        {r.session_id for r in valid},
        {r.msisdn for r in valid if r.msisdn},
        {(s.rating_group, s.service_identifier) for r in valid for s in r.services if s.rating_group is not None},
    )
    answers = [_handle(batch, r) if _valid(r) else CreditAnswer(ResultCode.UNABLE_TO_COMPLY) for r in requests]
    store.write(uow, batch)
    if batch.used:
        usage.ingest(uow, SOURCE, batch.used)
    return answers


def _valid(request: CreditRequest) -> bool:
    quantities = [request.requested or 0, request.used or 0]
    for service in request.services:
        quantities += [*service.requested.values(), *service.used.values()]
    return request.request_number >= 0 and min(quantities) >= 0


def _handle(batch: Batch, request: CreditRequest) -> CreditAnswer:
    session = batch.sessions.get(request.session_id)
    if session is not None:
        line = batch.lines.get(session.line_id)
    elif request.request_type in (RequestType.INITIAL, RequestType.EVENT) and request.msisdn:
        line = batch.lines_by_msisdn.get(request.msisdn)
    else:
        return CreditAnswer(ResultCode.UNKNOWN_SESSION_ID)
    if line is None:
        return CreditAnswer(ResultCode.USER_UNKNOWN)
    if session is not None:
        if request.request_number == session.last_request_number:
            return _stored(session)
        if _forgotten(session):
            return CreditAnswer(ResultCode.UNKNOWN_SESSION_ID)
        if (
            request.request_number < session.last_request_number
            or session.status == CLOSED
            or request.request_type in (RequestType.INITIAL, RequestType.EVENT)
        ):
            return CreditAnswer(ResultCode.UNABLE_TO_COMPLY)
    elif request.request_type in (RequestType.UPDATE, RequestType.TERMINATE):
        return CreditAnswer(ResultCode.UNKNOWN_SESSION_ID)
    else:
        session = Session(
            session_id=request.session_id,
            line_id=line.id,
            unit=request.kind.unit,
            zone=request.zone,
            status=OPEN,
            last_request_number=request.request_number,
            expires_at=batch.now,
            created_at=batch.now,
            emergency=_is_emergency(batch, request),
            origin_host=request.origin_host,
            origin_realm=request.origin_realm,
        )
        batch.sessions[request.session_id] = session
    answer = _decide(batch, request, line, session)
    _close_if_refused(request, answer, session)
    session.last_request_number = request.request_number
    session.last_answer = _as_json(answer)
    session.changed = True
    return answer


def _forgotten(session: Session) -> bool:
    """Closed by Duckline, not by its element (stale, or unknown to the element): a later request
    is for a session this server no longer has (5002)."""
    return session.status == CLOSED and session.closed_reason is not None


def _close_if_refused(request: CreditRequest, answer: CreditAnswer, session: Session) -> None:
    """A CCR-INITIAL not granted (4012 no credit, 4010, …) opens nothing: the session is kept only
    closed, with its answer for a retransmission (a later request on it gets 5012, as on any
    closed session). Nothing was reserved for it."""
    if request.request_type is RequestType.INITIAL and answer.result_code is not ResultCode.SUCCESS:
        session.status, session.reserved = CLOSED, 0


def _services(batch: Batch, request: CreditRequest, session: Session) -> list[_Service]:
    """The request's services, rated: each with the kind its rating group is charged in."""
    session_kind = _KINDS[session.unit]
    if not request.services:
        return [_Service(None, NO_RATING_GROUP, session_kind, request.requested, request.used)]
    found = []
    for asked in request.services:
        if asked.rating_group is None:
            # Charged in the session's kind, as plain RFC 4006 units are.
            kind: UsageKind | None = session_kind if request.request_type is not RequestType.INITIAL else asked.kind
            kind = kind or session_kind
            found.append(_Service(asked, NO_RATING_GROUP, kind, _pick(asked.requested, kind), _pick(asked.used, kind)))
            continue
        unit = batch.units.get((asked.rating_group, asked.service_identifier))
        kind = _KINDS[unit] if unit is not None else None
        requested = asked.requested.get(kind) if kind is not None else None
        used = asked.used.get(kind) if kind is not None else None
        found.append(_Service(asked, asked.rating_group, kind, requested, used))
    return found


def _pick(units: dict[UsageKind, int], kind: UsageKind) -> int | None:
    """Units without a rating group are in the session's kind; one kind alone is taken as it."""
    if kind in units:
        return units[kind]
    return next(iter(units.values())) if len(units) == 1 else None


def _decide(batch: Batch, request: CreditRequest, line: LineState, session: Session) -> CreditAnswer:
    services = _services(batch, request, session)
    reservations = {r.rating_group: r for r in line.reservations if r.session is session}
    seen: set[int] = set()
    answers: dict[int, ServiceAnswer] = {}  # by position in the request
    for at, service in enumerate(services):
        if service.key in seen:  # one reservation per rating group: a second block cannot be told apart
            answers[at] = _answer(service, ResultCode.UNABLE_TO_COMPLY)
        elif service.kind is None:
            answers[at] = _answer(service, ResultCode.RATING_FAILED)
        seen.add(service.key)
    live = [(at, s) for at, s in enumerate(services) if at not in answers]
    if request.request_type in (RequestType.UPDATE, RequestType.TERMINATE):  # every service's use, one batch
        for _, service in live:
            if service.used:
                cost = _charged_units(line, session, service, service.used)
                if not session.emergency:  # an emergency call is never charged
                    _charge(batch, request, line, session, service, cost)
    for _, service in live:
        if service.key in reservations:  # what was reserved is now used (charged above) or given back
            _set(reservations[service.key], 0)

    if request.request_type is RequestType.TERMINATE:
        _release(session, reservations)
        session.status = CLOSED
        for at, service in live:
            answers[at] = _answer(service, ResultCode.SUCCESS)
        return _whole(request, services, answers)
    if not session.emergency and (session.status == ABORTED or not line.in_service):
        if request.request_type is not RequestType.UPDATE:  # after an update the element ends it
            session.status = CLOSED
        _release(session, reservations)
        return CreditAnswer(ResultCode.END_USER_SERVICE_DENIED)

    for at, service in live:
        answers[at] = _grant(batch, request, line, session, service, reservations)
    if request.request_type is RequestType.EVENT:
        session.status = CLOSED
    session.reserved = sum(r.reserved for r in reservations.values())
    return _whole(request, services, answers)


def _set(reservation: Reservation, reserved: int) -> None:
    if reservation.reserved != reserved:
        reservation.reserved, reservation.changed = reserved, True


def _release(session: Session, reservations: dict[int, Reservation]) -> None:
    for reservation in reservations.values():
        _set(reservation, 0)
    session.reserved = 0


def _grant(
    batch: Batch,
    request: CreditRequest,
    line: LineState,
    session: Session,
    service: _Service,
    reservations: dict[int, Reservation],
) -> ServiceAnswer:
    """Grant (or, for an EVENT, debit) one rated service what it asks, as far as the buckets
    allow after every other open reservation."""
    assert service.kind is not None
    settings = batch.settings
    validity = settings.quota_validity_seconds
    if session.emergency:  # granted from no bucket, whatever the line holds
        if request.request_type is RequestType.EVENT:
            return _answer(service, ResultCode.SUCCESS, granted=service.requested or 1)
        session.expires_at = max(session.expires_at, batch.now + timedelta(seconds=validity))
        wanted = service.requested or settings.quota_default_units[service.kind.value]
        return _answer(service, ResultCode.SUCCESS, granted=wanted, validity_seconds=validity)
    available = _available(batch, line, session, service.key, service.kind.unit)
    voice = line.increments if service.kind is UsageKind.VOICE else None
    if request.request_type is RequestType.EVENT:
        wanted = service.requested or 1
        debit = voice.charge(session.seconds_used, wanted) if voice is not None else wanted
        if available < debit:
            return _answer(service, ResultCode.CREDIT_LIMIT_REACHED)
        _charge(batch, request, line, session, service, debit)
        return _answer(service, ResultCode.SUCCESS, granted=wanted)
    wanted = service.requested or settings.quota_default_units[service.kind.value]
    if voice is not None:
        granted, cost = voice.grant(session.seconds_used, wanted, available)
    else:
        granted = cost = min(wanted, available)
    if granted == 0:
        return _answer(service, ResultCode.CREDIT_LIMIT_REACHED)
    expires_at = batch.now + timedelta(seconds=validity)
    reservation = reservations.get(service.key)
    if reservation is None:
        reservation = Reservation(session, service.key, service.kind.unit, session.zone, 0, expires_at)
        line.reservations.append(reservation)
        reservations[service.key] = reservation
    reservation.unit, reservation.reserved, reservation.expires_at = service.kind.unit, cost, expires_at
    reservation.changed = True
    session.expires_at = max(session.expires_at, expires_at)
    return _answer(service, ResultCode.SUCCESS, granted=granted, validity_seconds=validity, final=granted < wanted)


def _available(batch: Batch, line: LineState, session: Session, key: int, unit: Unit) -> int:
    """What the line's usable buckets hold for the unit in the session's zone, less what every
    other open reservation holds and has not yet reported (one past its validity holds nothing),
    those of the session's other rating groups included."""
    held = line.held.get((unit, session.zone), 0)
    reserved = sum(
        r.reserved
        for r in line.reservations
        if r.unit == unit
        and r.zone == session.zone
        and r.expires_at > batch.now
        and r.session.status == OPEN
        and not (r.session is session and r.rating_group == key)
    )
    return max(0, held - reserved)


def _charge(
    batch: Batch, request: CreditRequest, line: LineState, session: Session, service: _Service, quantity: int
) -> None:
    """Charge what one service used (exactly once: by its record id, see `_record_id`); what the
    buckets hold for the rest of the batch goes down as the usage batch will take it."""
    assert service.kind is not None
    group = service.asked.rating_group if service.asked is not None else None
    batch.used.append(
        UsageInput(
            record_id=_record_id(request.session_id, request.request_number, group),
            msisdn=line.msisdn,
            kind=service.kind,
            zone=session.zone,
            quantity=quantity,
            started_at=request.at or batch.now,
        )
    )
    key = (service.kind.unit, session.zone)
    if line.in_service and key in line.held:
        line.held[key] -= min(quantity, line.held[key])


def _is_emergency(batch: Batch, request: CreditRequest) -> bool:
    """A call (or SMS) to an emergency number, or one the call server marked so: decided when the
    session opens, kept on it."""
    return request.emergency or is_emergency(request.called_number, batch.settings.emergency_numbers)


def _charged_units(line: LineState, session: Session, service: _Service, used: int) -> int:
    """What `used` units of a service cost: voice in the plan's increments, applied to the
    session's seconds used in all (which this adds to); anything else as used."""
    if service.kind is not UsageKind.VOICE:
        return used
    charged = line.increments.charge(session.seconds_used, used)
    session.seconds_used += used
    return charged


def _answer(service: _Service, code: ResultCode, **grant: Any) -> ServiceAnswer:
    asked = service.asked
    return ServiceAnswer(
        asked.rating_group if asked is not None else None,
        asked.service_identifier if asked is not None else None,
        code,
        service.kind,
        **grant,
    )


def _whole(request: CreditRequest, services: list[_Service], answers: dict[int, ServiceAnswer]) -> CreditAnswer:
    """The answer to the request from its services' answers. Plain RFC 4006: the one service's, at
    the top level. Several services: 2001 when the request was handled, whatever each service got;
    only when every service was refused for lack of credit is 4012 at the top level too, so that an
    element reading only the top level stops."""
    ordered = tuple(answers[at] for at in range(len(services)))
    if not request.services:
        only = ordered[0]
        return CreditAnswer(only.result_code, only.granted, only.validity_seconds, only.final)
    codes = {a.result_code for a in ordered}
    whole = ResultCode.CREDIT_LIMIT_REACHED if codes == {ResultCode.CREDIT_LIMIT_REACHED} else ResultCode.SUCCESS
    return CreditAnswer(whole, services=ordered)


def _record_id(session_id: str, request_number: int, rating_group: int | None = None) -> str:
    """The usage record id of one request's service: "<session>#<number>", "/<rating group>" after
    it for a service with one; the session id's SHA-256 in place of the id when it does not fit the
    column (RFC 6733 sets no length on a Session-Id)."""
    suffix = f"#{request_number}" + (f"/{rating_group}" if rating_group is not None else "")
    if len(session_id) + len(suffix) <= RECORD_ID_MAX:
        return session_id + suffix
    return "sha256:" + hashlib.sha256(session_id.encode()).hexdigest() + suffix


def _as_json(answer: CreditAnswer) -> dict[str, Any]:
    """The answer as `last_answer` keeps it, for a retransmission."""
    return {
        "result_code": int(answer.result_code),
        "granted": answer.granted,
        "validity_seconds": answer.validity_seconds,
        "final": answer.final,
        "services": [
            {
                "rating_group": s.rating_group,
                "service_identifier": s.service_identifier,
                "result_code": int(s.result_code),
                "kind": s.kind.value if s.kind is not None else None,
                "granted": s.granted,
                "validity_seconds": s.validity_seconds,
                "final": s.final,
            }
            for s in answer.services
        ],
    }


def _stored(session: Session) -> CreditAnswer:
    stored = dict(session.last_answer or {})
    services = tuple(
        ServiceAnswer(
            s.get("rating_group"),
            s.get("service_identifier"),
            ResultCode(s["result_code"]),
            UsageKind(s["kind"]) if s.get("kind") else None,
            s.get("granted"),
            s.get("validity_seconds"),
            bool(s.get("final", False)),
        )
        for s in stored.get("services", [])
    )
    return CreditAnswer(
        ResultCode(stored.get("result_code", ResultCode.UNABLE_TO_COMPLY)),
        stored.get("granted"),
        stored.get("validity_seconds"),
        bool(stored.get("final", False)),
        services,
    )
