"""A subscriber's self-care for a line: report the phone lost or stolen (service stops at once),
turn it back on with fresh proof of the account holder, move the eSIM to a new phone; and staff
lifting a suspension with a reason.

A suspension is `lines.suspension`, beside the status (see lines.states.Suspension): expiry,
grace and recycling go on as usual, and a renewal meanwhile extends the line without lifting it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select

from duckline.accounts import holder_proof
from duckline.accounts.models import Account
from duckline.accounts.roles import LINE_OPERATORS
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.lines import esim
from duckline.lines import service as lines
from duckline.lines.models import EsimProfile, Line, LineEvent, RetiredEsimProfile
from duckline.lines.states import LineStatus, Suspension, can_suspend, can_use_service
from duckline.messaging import events, notifications
from duckline.messaging.event_types import EsimMoved, LineResumed, LineSuspended
from duckline.staff import audit
from duckline.usage import credit_signals

RESUME, ESIM_MOVE = "line_resume", "esim_move"  # what a proof code is for
STAFF_REASON_MAX = 300


def report_lost(uow: UnitOfWork, actor: Account, line_id: int, reason: Suspension) -> Line:
    """Stop service on the line now: its open charging sessions are ended (nothing more is
    granted) and every later quota request is refused. Reporting again changes nothing."""
    line = _locked(uow, lines.visible_line(uow, actor, line_id))
    if not can_suspend(line.status):
        raise DomainError(ErrorCode.LINE_RECYCLED)
    if line.suspension is not None:
        return line  # already stopped, by this request's twin or an earlier one
    now = uow.now()
    line.suspension, line.suspended_at, line.updated_at = reason, now, now
    ended = credit_signals.abort(uow, line.id)  # each with an ASR to its element
    _event(uow, line, f"suspended: phone {reason.value}, reported by the subscriber")
    audit.record(uow, actor.id, "line.suspended", f"line:{line.id}", old=None, new=reason.value, sessions_ended=ended)
    events.emit(uow, LineSuspended(account_id=line.account_id, line_id=line.id, reason=reason.value))
    owner = _owner(uow, line)
    # Not by SMS to the lost phone; to the account's phone only when there is no email.
    channels = ("email",) if owner.email else ("sms",)
    if channels == ("email",) or owner.phone != line.msisdn:
        notifications.notify(uow, owner, "line_reported_lost", channels=channels, msisdn=_shown(line))
    return line


def send_proof_code(uow: UnitOfWork, actor: Account, line_id: int, purpose: str) -> str:
    """Email the holder a code to resume the line or move its eSIM; returns the address."""
    _own_line(uow, actor, line_id)
    return holder_proof.send_email_code(uow, actor, purpose)


def resume(uow: UnitOfWork, actor: Account, line_id: int, password: str | None, code: str | None) -> Line:
    """The account holder turns the line back on, proving it with the password or an emailed
    code. A wrong proof changes nothing on the line."""
    line = _own_line(uow, actor, line_id)
    if line.suspension is None:
        raise DomainError(ErrorCode.LINE_NOT_SUSPENDED)
    method = holder_proof.prove(uow, actor, RESUME, password, code)
    return _lift(uow, actor, _locked(uow, line), "resumed by the subscriber", proof=method)


def staff_resume(uow: UnitOfWork, actor: Account, line_id: int, reason: str) -> Line:
    """Staff turn a suspended line back on (e.g. the holder proved who they are at a shop)."""
    if actor.role not in LINE_OPERATORS:
        raise DomainError(ErrorCode.FORBIDDEN)
    cleaned = reason.strip()
    if not cleaned:
        raise DomainError(ErrorCode.REASON_REQUIRED, field="reason")
    if len(cleaned) > STAFF_REASON_MAX:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="reason")
    line = _locked(uow, lines.visible_line(uow, actor, line_id))
    if line.suspension is None:
        raise DomainError(ErrorCode.LINE_NOT_SUSPENDED)
    return _lift(uow, actor, line, f"resumed by staff: {cleaned}", reason=cleaned)


def move_esim(uow: UnitOfWork, actor: Account, line_id: int, password: str | None, code: str | None) -> EsimProfile:
    """Issue a new eSIM profile (ICCID and activation code) for the line; the old one is retired
    and refused from now on. Needs fresh proof, and a line's eSIM moves a few times a day at most."""
    line = _own_line(uow, actor, line_id)
    if line.status is LineStatus.RECYCLED:
        raise DomainError(ErrorCode.LINE_RECYCLED)
    holder_proof.prove(uow, actor, ESIM_MOVE, password, code)
    line = _locked(uow, line)
    now, settings = uow.now(), uow.settings
    moves = uow.session.scalar(
        select(func.count())
        .select_from(RetiredEsimProfile)
        .where(RetiredEsimProfile.line_id == line.id, RetiredEsimProfile.retired_at > now - timedelta(days=1))
    )
    if (moves or 0) >= settings.esim_moves_per_day:
        raise DomainError(ErrorCode.ESIM_MOVE_LIMIT, count=moves)
    profile = lines.esim_profile(uow, line)
    retired = RetiredEsimProfile(
        line_id=line.id,
        iccid=profile.iccid,
        smdp_address=profile.smdp_address,
        matching_id=profile.matching_id,
        issued_at=profile.created_at,
        retired_at=now,
        retired_by=actor.id,
    )
    uow.session.add(retired)
    uow.session.flush()
    old_iccid = profile.iccid
    prefix = settings.iccid_prefix
    profile.iccid = esim.make_iccid(prefix, esim.reissue_serial(prefix, retired.id))
    profile.smdp_address = settings.smdp_address
    profile.matching_id = secrets.token_hex(10).upper()
    profile.created_at = now
    line.updated_at = now
    _event(uow, line, f"eSIM moved to a new phone: profile {old_iccid} retired")
    audit.record(uow, actor.id, "line.esim_moved", f"line:{line.id}", old=old_iccid, new=profile.iccid)
    events.emit(uow, EsimMoved(account_id=line.account_id, line_id=line.id, iccid=profile.iccid))
    notifications.notify(uow, _owner(uow, line), "esim_moved", msisdn=_shown(line))
    return profile


def profile_in_use(uow: UnitOfWork, iccid: str | None, matching_id: str | None) -> tuple[EsimProfile, Line]:
    """For the SM-DP+ and the network: the current profile with this ICCID or matching ID, and its
    line. A retired one is refused (ESIM_PROFILE_RETIRED); one nobody issued is not found."""
    if not iccid and not matching_id:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="iccid")
    current = uow.session.scalars(select(EsimProfile).where(_matches(EsimProfile, iccid, matching_id))).first()
    if current is not None:
        line = uow.session.get(Line, current.line_id)
        assert line is not None
        if line.status is LineStatus.RECYCLED:
            raise DomainError(ErrorCode.LINE_RECYCLED)
        return current, line
    retired = uow.session.scalar(
        select(RetiredEsimProfile.id).where(_matches(RetiredEsimProfile, iccid, matching_id)).limit(1)
    )
    if retired is not None:
        raise DomainError(ErrorCode.ESIM_PROFILE_RETIRED)
    raise DomainError(ErrorCode.NOT_FOUND, field="iccid" if iccid else "matching_id")


def _matches(table: type[EsimProfile] | type[RetiredEsimProfile], iccid: str | None, matching_id: str | None) -> Any:
    conditions = []
    if iccid:
        conditions.append(table.iccid == iccid)
    if matching_id:
        conditions.append(table.matching_id == matching_id.upper())
    return or_(*conditions)


def _lift(uow: UnitOfWork, actor: Account, line: Line, why: str, **details: Any) -> Line:
    old = line.suspension.value if line.suspension else None
    if old is None:
        return line  # lifted meanwhile by another request
    line.suspension, line.suspended_at, line.updated_at = None, None, uow.now()
    _event(uow, line, why)
    audit.record(uow, actor.id, "line.resumed", f"line:{line.id}", old=old, new=None, **details)
    events.emit(uow, LineResumed(account_id=line.account_id, line_id=line.id, suspension=old))
    notifications.notify(uow, _owner(uow, line), "line_resumed", msisdn=_shown(line))
    return line


def _own_line(uow: UnitOfWork, actor: Account, line_id: int) -> Line:
    """Only the account holder proves who they are for their line; staff have their own way."""
    line = lines.visible_line(uow, actor, line_id)
    if line.account_id != actor.id:
        raise DomainError(ErrorCode.FORBIDDEN)
    return line


def _locked(uow: UnitOfWork, line: Line) -> Line:
    """The line row, locked and read again: concurrent reports are served one after the other."""
    locked = uow.session.scalars(
        select(Line).where(Line.id == line.id).with_for_update().execution_options(populate_existing=True)
    ).one()
    return locked


def _event(uow: UnitOfWork, line: Line, reason: str) -> None:
    uow.session.add(
        LineEvent(line_id=line.id, from_status=line.status, to_status=line.status, reason=reason[:200], at=uow.now())
    )


def _owner(uow: UnitOfWork, line: Line) -> Account:
    owner = uow.session.get(Account, line.account_id)
    assert owner is not None  # accounts are never deleted
    return owner


def _shown(line: Line) -> str:
    return notifications.msisdn(line.msisdn)


# --- Flows: each owns its transaction and returns what the API and the pages show ----------------


def report(transactions: Transactions, viewer: Account, line_id: int, reason: Suspension) -> lines.LineView:
    with transactions() as uow:
        return lines.LineView(report_lost(uow, viewer, line_id, reason))


def send_code(transactions: Transactions, viewer: Account, line_id: int, purpose: str) -> str:
    """Email the holder a proof code; the address it went to, masked."""
    with transactions() as uow:
        sent_to = send_proof_code(uow, viewer, line_id, purpose)
    return holder_proof.masked_email(sent_to)


def resume_line(
    transactions: Transactions, viewer: Account, line_id: int, password: str | None, code: str | None
) -> lines.LineView:
    with transactions() as uow:
        return lines.LineView(resume(uow, viewer, line_id, password, code))


def staff_resume_line(transactions: Transactions, actor: Account, line_id: int, reason: str) -> lines.LineView:
    with transactions() as uow:
        return lines.LineView(staff_resume(uow, actor, line_id, reason))


def line_owner(transactions: Transactions, line_id: int) -> int | None:
    """The account a line belongs to, None for no such line (the console's staff resume)."""
    with transactions() as uow:
        line = uow.session.get(Line, line_id) if is_id(line_id) else None
        return line.account_id if line else None


@dataclass(frozen=True)
class EsimMove:
    line: lines.LineView
    profile: EsimProfile  # the new one


def move(transactions: Transactions, viewer: Account, line_id: int, password: str | None, code: str | None) -> EsimMove:
    with transactions() as uow:
        profile = move_esim(uow, viewer, line_id, password, code)
        return EsimMove(lines.LineView(lines.visible_line(uow, viewer, line_id)), profile)


@dataclass(frozen=True)
class ProfileState:
    iccid: str
    msisdn: str
    line_id: int
    in_service: bool


def profile_state(transactions: Transactions, iccid: str | None, matching_id: str | None) -> ProfileState:
    """For the SM-DP+ and the network: may this profile download or attach?"""
    with transactions() as uow:
        profile, line = profile_in_use(uow, iccid, matching_id)
        return ProfileState(profile.iccid, line.msisdn, line.id, can_use_service(line.status, line.suspension))
