"""Closing an account (a subscriber's right under Hong Kong's Personal Data (Privacy) Ordinance,
Cap. 486): it keeps what the law and the ledger require, and says what and for how long before it
is confirmed.

Closing is final and immediate: sign-in is refused, every session and token revoked, automatic
renewal and saved payment methods removed, and the lines end at once (the days and allowances left
lapse; a number is then recycled by the usual rules: after the grace and retention periods, so a
number is never given to someone else the day after). What is then kept, for how long:

- orders, payments, refunds, receipts and the ledger: `financial_records_years` (7: the Inland
  Revenue Ordinance, s.51C, asks business records to be kept 7 years);
- the identity verification record (names, date of birth, document number and image):
  `closure_identity_days` after closing (the real-name registration rules, Cap. 106AI, ask an
  operator to keep registration records after the service ends), then erased;
- contact details, password, message texts and support conversations: `closure_contact_days` after
  closing (refunds still under way can reach the subscriber), then erased or anonymised.
`erase_due` (the "privacy" job) does the erasing when its time comes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, or_, select, update

from duckline.accounts import service as accounts
from duckline.accounts.models import (
    Account,
    AccountClosure,
    ApiToken,
    ContactChange,
    DocumentImage,
    Guardian,
    OtpChallenge,
    Person,
)
from duckline.accounts.roles import STAFF
from duckline.billing import payment_methods
from duckline.billing.models import Order
from duckline.billing.order_states import OrderStatus
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.protection import Passwords
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.lines import numbers
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.messaging import notifications
from duckline.messaging.models import Notification
from duckline.staff import audit
from duckline.support.models import Ticket, TicketMessage

ERASED = "[erased]"
# Orders whose money is not settled yet: a closure waits for them (a payment completing on an
# ended line would start it again).
UNSETTLED = (OrderStatus.CREATED, OrderStatus.PAYMENT_PENDING, OrderStatus.PAID)


class ProofApp(payment_methods.App, Protocol):
    """What closing needs: transactions, the password check and the providers (saved methods are
    detached there)."""

    passwords: Passwords


@dataclass(frozen=True)
class Retention:
    """What closing keeps and for how long (the closure page and the API state it)."""

    grace_days: int
    retention_days: int
    contact_days: int
    identity_days: int
    financial_years: int

    @classmethod
    def of(cls, uow: UnitOfWork) -> Retention:
        s = uow.settings
        return cls(
            s.grace_days, s.retention_days, s.closure_contact_days, s.closure_identity_days, s.financial_records_years
        )


def prove(app: accounts.SignInApp, account_id: int, password: str) -> None:
    """A fresh proof of the account holder: the password, checked as at sign-in (outside any
    transaction, and wrong ones count towards the same lock), so the closing and the download
    forms cannot be used to guess it. Callers rate-limit it too."""
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        closed = account is None or account.closed_at is not None
    if closed:
        raise DomainError(ErrorCode.PASSWORD_WRONG, field="password")
    accounts.check_password(app, account_id, password)


# --- closing the account ------------------------------------------------------------------------


@dataclass(frozen=True)
class Closed:
    account_id: int
    closed_at: datetime
    lines_ended: list[str]
    erase_contact_at: datetime
    erase_identity_at: datetime


def close(app: ProofApp, account_id: int, password: str, confirmed: bool) -> Closed:
    """Close the account at once, after a fresh proof of its holder; see the module's docstring."""
    if not confirmed:
        raise DomainError(ErrorCode.CLOSURE_NOT_CONFIRMED, field="confirm")
    prove(app, account_id, password)
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id, with_for_update=True)
        if account is None or account.role in STAFF:
            raise DomainError(ErrorCode.FORBIDDEN)
        if account.closed_at is not None:
            raise DomainError(ErrorCode.ACCOUNT_CLOSED)
        _check_settled(uow, account)
        closed, detach = _close(uow, account)
    for target in detach:
        payment_methods.detach(app, target, account_id)
    return closed


def _check_settled(uow: UnitOfWork, account: Account) -> None:
    unsettled = uow.session.scalar(
        select(Order.id).where(
            Order.account_id == account.id,
            Order.status.in_(UNSETTLED),
            or_(Order.status == OrderStatus.PAID, Order.pay_by > uow.now()),
        )
    )
    if unsettled is not None:
        raise DomainError(ErrorCode.CLOSURE_PAYMENT_IN_PROGRESS, field="orders")


def _close(uow: UnitOfWork, account: Account) -> tuple[Closed, list[payment_methods.SavedAtProvider]]:
    now, terms = uow.now(), Retention.of(uow)
    account.closed_at = now
    ended = [
        _end_line(uow, line)
        for line in uow.session.scalars(
            select(Line)
            .where(Line.account_id == account.id, Line.status != LineStatus.RECYCLED)
            .order_by(Line.id)
            .with_for_update()
        )
    ]
    detach: list[payment_methods.SavedAtProvider] = []
    for saved in lines.saved_methods(uow, account):
        payment_methods.revoke(uow, account, saved, account.id)
        detach.append(payment_methods.to_detach(saved))
    uow.session.execute(
        update(ApiToken).where(ApiToken.account_id == account.id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    )
    uow.session.execute(delete(ContactChange).where(ContactChange.account_id == account.id))
    # Offers and reminders stop; what is always sent (security, payments) still reaches them.
    account.preferences = {channel: {"marketing": False, "reminders": False} for channel in notifications.CHANNELS}
    person = uow.session.get(Person, account.person_id, with_for_update=True) if account.person_id else None
    if person is not None:
        # The record is kept for its retention, but no longer blocks a new registration with the document.
        person.document_hash = uow.protector.lookup_hash("closed", person.document_hash)
    closure = AccountClosure(
        account_id=account.id,
        closed_at=now,
        erase_contact_at=now + timedelta(days=terms.contact_days),
        erase_identity_at=now + timedelta(days=terms.identity_days),
    )
    uow.session.add(closure)
    notifications.notify(
        uow,
        account,
        "account_closed",
        f"account-closed:{account.id}",
        years=terms.financial_years,
        days=terms.contact_days,
    )
    audit.record(
        uow,
        account.id,
        "account.closed",
        f"account:{account.id}",
        lines=ended,
        erase_contact_at=closure.erase_contact_at.isoformat(),
        erase_identity_at=closure.erase_identity_at.isoformat(),
    )
    return Closed(account.id, now, ended, closure.erase_contact_at, closure.erase_identity_at), detach


def _end_line(uow: UnitOfWork, line: Line) -> str:
    """The line stops at once. A line that never started gives its number back now; any other is
    expired from now, so the lifecycle recycles its number after the usual grace and retention."""
    reason = "account closed"
    line.auto_renew, line.auto_renew_method_id = False, None
    if line.status is LineStatus.PENDING:
        lines.transition(uow, line, LineStatus.RECYCLED, reason)
        numbers.release_number(uow, line.msisdn)
        return line.msisdn
    if line.status is LineStatus.ACTIVE:
        lines.transition(uow, line, LineStatus.GRACE, reason)
    if line.status in (LineStatus.GRACE, LineStatus.SUSPENDED):
        lines.transition(uow, line, LineStatus.EXPIRED, reason)
    if line.expires_at is None or line.expires_at > uow.now():
        line.expires_at = uow.now()
    return line.msisdn


def closure_of(uow: UnitOfWork, account_id: int) -> AccountClosure | None:
    return uow.session.scalars(select(AccountClosure).where(AccountClosure.account_id == account_id)).first()


# --- erasing what was kept only for a while -----------------------------------------------------


def erase_due(uow: UnitOfWork) -> dict[str, int]:
    """Erase what closed accounts left once its retention is over. Safe to run as often as wanted."""
    now = uow.now()
    done = {"contact": 0, "identity": 0}
    for closure in uow.session.scalars(
        select(AccountClosure)
        .where(AccountClosure.contact_erased_at.is_(None), AccountClosure.erase_contact_at <= now)
        .order_by(AccountClosure.id)
        .with_for_update(skip_locked=True)
    ).all():
        _erase_contact(uow, closure)
        done["contact"] += 1
    for closure in uow.session.scalars(
        select(AccountClosure)
        .where(AccountClosure.identity_erased_at.is_(None), AccountClosure.erase_identity_at <= now)
        .order_by(AccountClosure.id)
        .with_for_update(skip_locked=True)
    ).all():
        _erase_identity(uow, closure)
        done["identity"] += 1
    return done


def _erase_contact(uow: UnitOfWork, closure: AccountClosure) -> None:
    account = uow.session.get(Account, closure.account_id, with_for_update=True)
    assert account is not None  # accounts are never deleted
    old_phone = account.phone
    account.phone = f"closed-{account.id}"  # frees the number for a new registration
    account.email, account.preferences = None, {}
    account.password_hash = "!"  # noqa: S105 - not a hash: matches no password
    uow.session.execute(delete(OtpChallenge).where(OtpChallenge.phone == old_phone))
    uow.session.execute(
        update(Notification)
        .where(Notification.account_id == account.id)
        .values(recipient=ERASED, subject=None, body=ERASED, html=None, one_time_code=None)
    )
    ticket_ids = select(Ticket.id).where(Ticket.account_id == account.id, Ticket.kind == "subscriber")
    uow.session.execute(update(TicketMessage).where(TicketMessage.ticket_id.in_(ticket_ids)).values(body=ERASED))
    uow.session.execute(
        update(Ticket)
        .where(Ticket.account_id == account.id, Ticket.kind == "subscriber")
        .values(subject=ERASED, body=ERASED)
    )
    closure.contact_erased_at = uow.now()
    audit.record(uow, None, "account.contact_erased", f"account:{account.id}")


def _erase_identity(uow: UnitOfWork, closure: AccountClosure) -> None:
    account = uow.session.get(Account, closure.account_id, with_for_update=True)
    assert account is not None
    person = uow.session.get(Person, account.person_id, with_for_update=True) if account.person_id else None
    account.person_id = None
    if person is not None:
        uow.session.flush()
        still_used = uow.session.scalar(select(Account.id).where(Account.person_id == person.id))
        if still_used is None:
            uow.session.execute(delete(DocumentImage).where(DocumentImage.person_id == person.id))
            guardian_id = person.guardian_id
            uow.session.delete(person)
            uow.session.flush()
            if guardian_id is not None:
                uow.session.execute(delete(Guardian).where(Guardian.id == guardian_id))
    closure.identity_erased_at = uow.now()
    audit.record(uow, None, "account.identity_erased", f"account:{account.id}")


def retention_terms(transactions: Transactions) -> Retention:
    with transactions() as uow:
        return Retention.of(uow)
