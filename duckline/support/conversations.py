"""Support conversations: a subscriber opens a ticket, staff and the subscriber reply.

A ticket's body is its opening message; replies are `TicketMessage` rows. Subscribers see only
their own subscriber tickets (reconciliation cases are for staff); anything else looks missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select

from duckline.accounts.models import Account
from duckline.accounts.roles import STAFF
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.pagination import page
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.messaging import notifications
from duckline.staff import audit
from duckline.support import cases as tickets
from duckline.support.models import Ticket, TicketMessage
from duckline.support.states import TicketKind, TicketStatus

SUBSCRIBER = TicketKind.SUBSCRIBER
OPEN, WAITING, RESOLVED = TicketStatus.OPEN, TicketStatus.WAITING, TicketStatus.RESOLVED
SUBJECT_MAX, BODY_MAX = 200, 5000
# What a subscriber's ticket is about, chosen when it is opened (the desk filters by it).
TOPICS = ("billing", "renewal", "line", "account", "other")
NOTIFIED_REPLY_CHARS = 200


def open_ticket(uow: UnitOfWork, account: Account, subject: str, body: str, topic: str | None = None) -> Ticket:
    if topic is not None and topic not in TOPICS:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="topic")
    ticket = tickets.open_ticket(
        uow,
        SUBSCRIBER,
        checked_text(subject, "subject", SUBJECT_MAX),
        checked_text(body, "body", BODY_MAX),
        account.id,
        None,
        topic=topic,
    )
    audit.record(uow, account.id, "ticket.opened", f"ticket:{ticket.id}")
    return ticket


def reply(uow: UnitOfWork, author: Account, ticket: Ticket, body: str) -> TicketMessage:
    """Add a message. A staff reply tells the subscriber (in their language, on the channels they
    want support messages on) and the ticket waits for them; a subscriber's reply reopens a ticket
    that waited for it or was resolved."""
    staff = author.role in STAFF
    message = TicketMessage(
        ticket_id=ticket.id,
        author_id=author.id,
        body=checked_text(body, "body", BODY_MAX),
        staff=staff,
        created_at=uow.now(),
    )
    uow.session.add(message)
    uow.session.flush()
    if staff:
        owner = uow.session.get(Account, ticket.account_id) if ticket.account_id is not None else None
        # Replies on reconciliation cases are notes between staff: the subscriber cannot see them.
        if owner is not None and ticket.kind == SUBSCRIBER:
            notifications.notify(
                uow,
                owner,
                "ticket_answered",
                dedupe_key=f"ticket-message:{message.id}",
                ticket=ticket.id,
                reply=message.body[:NOTIFIED_REPLY_CHARS],
            )
            # Support has answered: the subscriber's turn (answering a closed ticket opens it again).
            ticket.status = WAITING
            ticket.resolved_at = ticket.resolved_by = ticket.resolution = ticket.close_reason = None
        audit.record(uow, author.id, "ticket.replied", f"ticket:{ticket.id}", message=message.id)
    elif ticket.status in (WAITING, RESOLVED):
        ticket.status, ticket.resolved_at, ticket.resolved_by, ticket.resolution = OPEN, None, None, None
        ticket.close_reason = None
    return message


def resolve(uow: UnitOfWork, actor: Account, ticket: Ticket, resolution: str) -> Ticket:
    """Staff close a subscriber's ticket; reconciliation cases are resolved by reconciliation
    (apply, refund or close), never from a conversation."""
    if actor.role not in STAFF or ticket.kind != SUBSCRIBER:
        raise DomainError(ErrorCode.FORBIDDEN, field="resolve")
    return tickets.resolve(uow, actor, ticket, resolution)


def visible_ticket(uow: UnitOfWork, viewer: Account, ticket_id: int) -> Ticket:
    """Staff see every ticket; a subscriber only their own, and others look like missing ones."""
    ticket = uow.session.get(Ticket, ticket_id) if is_id(ticket_id) else None
    if ticket is None or (viewer.role not in STAFF and (ticket.account_id != viewer.id or ticket.kind != SUBSCRIBER)):
        raise DomainError(ErrorCode.NOT_FOUND)
    return ticket


def messages(uow: UnitOfWork, ticket: Ticket, internal: bool = False) -> list[TicketMessage]:
    """The conversation, oldest first; staff's internal notes only when `internal` (the desk)."""
    query = select(TicketMessage).where(TicketMessage.ticket_id == ticket.id)
    if not internal:
        query = query.where(TicketMessage.internal.is_(False))
    return list(uow.session.scalars(query.order_by(TicketMessage.id)).all())


def latest_messages(uow: UnitOfWork, ticket_ids: list[int]) -> dict[int, TicketMessage]:
    """The newest reply of each ticket that has one (to show who spoke last)."""
    if not ticket_ids:
        return {}
    newest = (
        select(func.max(TicketMessage.id))
        .where(TicketMessage.ticket_id.in_(ticket_ids), TicketMessage.internal.is_(False))
        .group_by(TicketMessage.ticket_id)
    )
    rows = uow.session.scalars(select(TicketMessage).where(TicketMessage.id.in_(newest))).all()
    return {row.ticket_id: row for row in rows}


def for_account(account: Account) -> Select[Ticket]:
    """A subscriber's own tickets, as a query to page through."""
    return select(Ticket).where(Ticket.account_id == account.id, Ticket.kind == SUBSCRIBER)


def for_staff(status: str | None = None, kind: str | None = None) -> Select[Ticket]:
    """Every ticket, for staff, optionally of one status and one kind."""
    query = select(Ticket)
    if status is not None:
        query = query.where(Ticket.status == status)
    if kind is not None:
        query = query.where(Ticket.kind == kind)
    return query


def checked_text(value: str, field: str, limit: int) -> str:
    text = value.strip()
    if not text or len(text) > limit:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field=field)
    return text


# --- flows: each one transaction, returning rows already loaded (nothing loads after commit) ------


@dataclass(frozen=True)
class Thread:
    """A ticket and its conversation as the viewer sees it, oldest message first."""

    ticket: Ticket
    messages: list[TicketMessage]


@dataclass(frozen=True)
class TicketPage:
    tickets: list[Ticket]  # newest first
    latest: dict[int, TicketMessage]  # each ticket's newest reply, by ticket id
    next_cursor: str | None


def start_ticket(transactions: Transactions, viewer: Account, subject: str, body: str, topic: str | None) -> Ticket:
    with transactions() as uow:
        return open_ticket(uow, viewer, subject, body, topic)


def ticket_list(
    transactions: Transactions,
    viewer: Account,
    cursor: str | None,
    limit: int,
    status: str | None = None,
    kind: str | None = None,
) -> TicketPage:
    """The viewer's own tickets; staff get every ticket, of `status` and `kind` when given."""
    if viewer.role in STAFF:
        query = for_staff(status, kind)
    else:
        query = for_account(viewer)
        if status is not None:
            query = query.where(Ticket.status == status)
    with transactions() as uow:
        rows, next_cursor = page(uow.session, query, Ticket.id, cursor, limit)
        return TicketPage(rows, latest_messages(uow, [t.id for t in rows]), next_cursor)


def thread(transactions: Transactions, viewer: Account, ticket_id: int) -> Thread:
    with transactions() as uow:
        ticket = visible_ticket(uow, viewer, ticket_id)
        return Thread(ticket, messages(uow, ticket))


def answer(transactions: Transactions, viewer: Account, ticket_id: int, body: str, resolve_it: bool = False) -> Thread:
    """Reply to a ticket the viewer may see (and, for staff, resolve it with the same words)."""
    with transactions() as uow:
        ticket = visible_ticket(uow, viewer, ticket_id)
        reply(uow, viewer, ticket, body)
        if resolve_it:
            resolve(uow, viewer, ticket, body)
        return Thread(ticket, messages(uow, ticket))
