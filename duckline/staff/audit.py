"""The audit log: who did what to what, written in the same transaction as the change.

A change is recorded with what it was before and after (`old=`, `new=`); money as
`{"amount": minor units, "currency": ISO 4217}`. Never a full identity number, a password, a
one-time code or a card number. What each entry says to a reader is in `audit_texts`.

Staff read the log through `entries`, filtered by who acted, what was acted on, the action and a
time window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from duckline.accounts.models import Account
from duckline.accounts.phone import normalise_mobile
from duckline.accounts.roles import Role
from duckline.billing.models import Order, Payment
from duckline.catalog.models import Plan
from duckline.core import pagination
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.lines.models import Line
from duckline.staff.models import AuditEntry
from duckline.support.models import Ticket

ACTION_MAX, QUERY_MAX = 60, 100
FIRST_YEAR, LAST_YEAR = 1970, 9998
_SUBJECT = re.compile(r"([a-z_]+):([A-Za-z0-9_\-]{1,60})")
_ID = re.compile(r"#?(\d{1,18})")


def record(uow: UnitOfWork, actor_id: int | None, action: str, target: str, **detail: Any) -> None:
    uow.session.add(AuditEntry(actor_id=actor_id, action=action, target=target, detail=detail, at=uow.now()))


def money(amount: int, currency: str) -> dict[str, Any]:
    """A money value as the log keeps it."""
    return {"amount": amount, "currency": currency}


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(old, new) of the fields whose value differs, for `record(..., old=old, new=new)`."""
    changed = [key for key in after if before.get(key) != after[key]]
    return {key: before.get(key) for key in changed}, {key: after[key] for key in changed}


@dataclass(frozen=True)
class Filters:
    """What a reader asked for, as typed: empty strings mean "any"."""

    actor: str = ""
    subject: str = ""
    action: str = ""
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    @property
    def any(self) -> bool:
        return bool(self.actor or self.subject or self.action or self.since or self.until)


def entries(uow: UnitOfWork, filters: Filters) -> Select[Any]:
    """The entries matching `filters` (page them with web.pagination, newest first). An actor or
    subject that cannot be read is a validation error on its field; one that names nobody matches
    nothing."""
    query = select(AuditEntry)
    if filters.actor.strip():
        query = query.where(AuditEntry.actor_id.in_(_actor_ids(uow, filters.actor.strip())))
    if filters.subject.strip():
        query = query.where(AuditEntry.target.in_(_targets(uow, filters.subject.strip())))
    if filters.action.strip():
        if len(filters.action) > ACTION_MAX:
            raise DomainError(ErrorCode.VALIDATION_FAILED, field="action")
        query = query.where(AuditEntry.action == filters.action.strip())
    for name, moment in (("since", filters.since), ("until", filters.until)):
        if moment is not None and not FIRST_YEAR <= moment.year <= LAST_YEAR:  # far ends overflow in UTC
            raise DomainError(ErrorCode.VALIDATION_FAILED, field=name)
    if filters.since is not None and filters.until is not None and filters.until <= filters.since:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="until")
    if filters.since is not None:
        query = query.where(AuditEntry.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEntry.at < filters.until)
    return query


def _too_long(text: str, field: str) -> None:
    if len(text) > QUERY_MAX:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field=field)


def _looks_like_phone(text: str) -> bool:
    digits = re.sub(r"[\s\-()]", "", text)
    return digits.startswith("+") or (digits.isdigit() and len(digits) >= 8)


def _phone(uow: UnitOfWork, text: str, field: str) -> str:
    try:
        return normalise_mobile(text, uow.settings.allowed_regions, uow.settings.default_region)
    except DomainError as exc:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field=field) from exc


def _actor_ids(uow: UnitOfWork, text: str) -> list[int]:
    """An account id ("12", "#12", "account:12") or a phone number ("+852 5100 0001", "51000001")."""
    _too_long(text, "actor")
    found = _ID.fullmatch(text.removeprefix("account:"))
    if found and not _looks_like_phone(text):
        return [int(found.group(1))] if is_id(int(found.group(1))) else []
    if not _looks_like_phone(text):
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="actor")
    phone = _phone(uow, text, "actor")
    return list(uow.session.scalars(select(Account.id).where(Account.phone == phone)))


def _targets(uow: UnitOfWork, text: str) -> list[str]:
    """A subject as the log names it ("account:12", "plan:monthly", "pool"), or a phone number:
    the account signed in with it, its identity record, and the line that has it as its number."""
    _too_long(text, "subject")
    if _looks_like_phone(text) and ":" not in text:
        phone = _phone(uow, text, "subject")
        targets: list[str] = []
        for account_id, person_id in uow.session.execute(
            select(Account.id, Account.person_id).where(Account.phone == phone)
        ):
            targets.append(f"account:{account_id}")
            if person_id is not None:
                targets.append(f"person:{person_id}")
        targets += [f"line:{line_id}" for line_id in uow.session.scalars(select(Line.id).where(Line.msisdn == phone))]
        return targets
    cleaned = text.replace(" ", "").lower()
    kind, _, key = cleaned.partition(":")
    if key.startswith("#"):
        cleaned = f"{kind}:{key[1:]}"
    if _SUBJECT.fullmatch(cleaned) or re.fullmatch(r"[a-z_]{2,40}", cleaned):
        return [cleaned]
    raise DomainError(ErrorCode.VALIDATION_FAILED, field="subject")


@dataclass(frozen=True)
class Subject:
    """What the log's target names, as far as the reader needs: its kind and key, the subscriber
    it belongs to (for a link to their page), a plan's names, whether a ticket is a case."""

    kind: str
    key: str
    account_id: int | None = None
    names: dict[str, str] | None = None
    case: bool = False


def subjects(uow: UnitOfWork, targets: set[str]) -> dict[str, Subject]:
    """Look the entries' targets up, a few queries per page whatever its length."""
    by_kind: dict[str, set[str]] = {}
    for target in targets:
        kind, _, key = target.partition(":")
        by_kind.setdefault(kind, set()).add(key)
    ids = {kind: {int(k) for k in keys if k.isdigit() and is_id(int(k))} for kind, keys in by_kind.items()}
    s = uow.session
    owners: dict[str, dict[int, int | None]] = {}
    cases: set[int] = set()
    if ids.get("account"):
        owners["account"] = {
            i: i
            for i in s.scalars(
                select(Account.id).where(Account.id.in_(ids["account"]), Account.role == Role.SUBSCRIBER)
            )
        }
    if ids.get("person"):
        owners["person"] = {
            person_id: account_id
            for person_id, account_id in s.execute(
                select(Account.person_id, Account.id).where(Account.person_id.in_(ids["person"]))
            )
            if person_id is not None
        }
    if ids.get("line"):
        owners["line"] = dict(s.execute(select(Line.id, Line.account_id).where(Line.id.in_(ids["line"]))).all())
    if ids.get("order"):
        owners["order"] = dict(s.execute(select(Order.id, Order.account_id).where(Order.id.in_(ids["order"]))).all())
    if ids.get("payment"):
        owners["payment"] = dict(
            s.execute(
                select(Payment.id, Order.account_id)
                .join(Order, Order.id == Payment.order_id)
                .where(Payment.id.in_(ids["payment"]))
            ).all()
        )
    if ids.get("ticket"):
        owners["ticket"] = {}
        for ticket_id, account_id, kind in s.execute(
            select(Ticket.id, Ticket.account_id, Ticket.kind).where(Ticket.id.in_(ids["ticket"]))
        ):
            owners["ticket"][ticket_id] = account_id
            if kind != "subscriber":
                cases.add(ticket_id)
    plans: dict[str, dict[str, str]] = {}
    if by_kind.get("plan"):
        plans = dict(s.execute(select(Plan.code, Plan.names).where(Plan.code.in_(by_kind["plan"]))).all())
    found: dict[str, Subject] = {}
    for target in targets:
        kind, _, key = target.partition(":")
        number = int(key) if key.isdigit() and is_id(int(key)) else None
        found[target] = Subject(
            kind=kind,
            key=key,
            account_id=owners.get(kind, {}).get(number) if number is not None else None,
            names=plans.get(key) if kind == "plan" else None,
            case=kind == "ticket" and number in cases,
        )
    return found


def phones(uow: UnitOfWork, account_ids: set[int]) -> dict[int, str]:
    """The login phones of the entries' actors."""
    if not account_ids:
        return {}
    return dict(uow.session.execute(select(Account.id, Account.phone).where(Account.id.in_(account_ids))).all())


# --- Flows: reading the log ---------------------------------------------------------------------


@dataclass(frozen=True)
class LogPage:
    """A page of the log, newest first, with what its entries name: the API describes each entry
    by its target; the console also names the actors (their phones) and the orders, plans and
    payments in the details, to link them."""

    entries: list[AuditEntry]
    next_cursor: str | None
    subjects: dict[str, Subject]
    phones: dict[int, str]  # by actor id; the console's only


def log_page(
    transactions: Transactions,
    viewer: Account,
    filters: Filters,
    cursor: str | None,
    limit: int,
    console: bool = False,
) -> LogPage:
    with transactions() as uow:
        rows, next_cursor = pagination.page(uow.session, entries(uow, filters), AuditEntry.id, cursor, limit)
        if not console:
            return LogPage(rows, next_cursor, subjects(uow, {e.target for e in rows}), {})
        actor_ids = {e.actor_id for e in rows if e.actor_id}
        targets = {e.target for e in rows} | {f"account:{i}" for i in actor_ids}
        for e in rows:  # subjects named in details (an order refunded, a plan put on a line)
            targets |= {f"{k}:{e.detail[k]}" for k in ("order", "plan", "payment") if e.detail.get(k) is not None}
        return LogPage(rows, next_cursor, subjects(uow, targets), phones(uow, actor_ids))
