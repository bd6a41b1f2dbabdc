"""The staff support desk: one queue of subscriber tickets and reconciliation cases that need a
person, and what staff do with a ticket (reply, internal note, assign, close with a reason, link
the orders, payments and cases it concerns).

Statuses: a subscriber ticket is "open" (support's turn), "waiting" (for the subscriber: support
replied) or "resolved" (closed, with a reason). A staff reply makes it wait; the subscriber's
reply opens it again (support.conversations). Reconciliation cases are open or resolved; they are
resolved on the reconciliation page (apply, refund or close), never from the desk.
Every change here is audited; what a subscriber wrote and internal notes never go into the log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, func, select

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.billing.models import Order, Payment
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.pagination import page
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.staff import audit
from duckline.support import conversations as support
from duckline.support.models import Ticket, TicketLink, TicketMessage
from duckline.support.states import LinkTarget, TicketKind

DESK_ROLES = frozenset({Role.SUPPORT, Role.ADMIN})
CASE_KINDS = (TicketKind.RECONCILIATION, TicketKind.PAYMENT_MISMATCH)
STATUSES = ("open", "waiting", "closed")  # as the desk names them; closed is stored as "resolved"
KINDS = ("subscriber", "case")
ASSIGNED = ("me", "unassigned", "anyone")
AGES = (1, 3, 7)  # "older than" choices, in days
CLOSE_REASONS = ("answered", "duplicate", "no_response", "resolved_by_action")
LINK_TARGETS = tuple(LinkTarget)
NOTE_TEXT_MAX = 500


@dataclass(frozen=True)
class Filters:
    """What the queue shows; None means any. The default is what needs an answer: open tickets."""

    status: str | None = "open"
    older_than_days: int | None = None
    topic: str | None = None
    language: str | None = None
    assigned: str = "anyone"
    kind: str | None = None

    def check(self) -> Filters:
        """The same filters, or a validation error naming the first bad one."""
        if self.status is not None and self.status not in STATUSES:
            raise DomainError(ErrorCode.VALIDATION_FAILED, field="status")
        if self.older_than_days is not None and not 0 <= self.older_than_days <= 3650:
            raise DomainError(ErrorCode.VALIDATION_FAILED, field="older_than_days")
        if self.topic is not None and self.topic not in support.TOPICS:
            raise DomainError(ErrorCode.VALIDATION_FAILED, field="topic")
        if self.assigned not in ASSIGNED:
            raise DomainError(ErrorCode.VALIDATION_FAILED, field="assigned")
        if self.kind is not None and self.kind not in KINDS:
            raise DomainError(ErrorCode.VALIDATION_FAILED, field="kind")
        return self


def queue(filters: Filters, viewer: Account, now: datetime) -> Select[Ticket]:
    """Subscriber tickets and reconciliation cases matching `filters`, as a query to page through
    (oldest first: the pager orders by id, which follows the time of opening)."""
    filters.check()
    query = select(Ticket)
    if filters.kind == "subscriber":
        query = query.where(Ticket.kind == support.SUBSCRIBER)
    elif filters.kind == "case":
        query = query.where(Ticket.kind.in_(CASE_KINDS))
    else:
        query = query.where(Ticket.kind.in_((support.SUBSCRIBER, *CASE_KINDS)))
    if filters.status is not None:
        query = query.where(Ticket.status == stored_status(filters.status))
    if filters.older_than_days:
        query = query.where(Ticket.created_at < now - timedelta(days=filters.older_than_days))
    if filters.topic is not None:
        query = query.where(Ticket.kind == support.SUBSCRIBER, Ticket.topic == filters.topic)
    if filters.language is not None:
        speakers = select(Account.id).where(Account.language == filters.language)
        query = query.where(Ticket.account_id.in_(speakers))
    if filters.assigned == "me":
        query = query.where(Ticket.assignee_id == viewer.id)
    elif filters.assigned == "unassigned":
        query = query.where(Ticket.assignee_id.is_(None))
    return query


def stored_status(status: str) -> str:
    return support.RESOLVED if status == "closed" else status


def desk_status(ticket: Ticket) -> str:
    return "closed" if ticket.status == support.RESOLVED else ticket.status


def is_case(ticket: Ticket) -> bool:
    return ticket.kind in CASE_KINDS


@dataclass(frozen=True)
class Summary:
    """The dashboard's figures: what waits for support and for how long."""

    open: int  # subscriber tickets whose turn is support's
    waiting: int  # subscriber tickets waiting for the subscriber
    cases: int  # reconciliation cases that need a person
    oldest_open_at: datetime | None  # of open tickets and cases alike


def summary(uow: UnitOfWork) -> Summary:
    s = uow.session
    counts = dict(
        s.execute(
            select(Ticket.status, func.count())
            .where(Ticket.kind == support.SUBSCRIBER, Ticket.status.in_((support.OPEN, support.WAITING)))
            .group_by(Ticket.status)
        ).all()
    )
    cases = s.scalar(select(func.count()).where(Ticket.kind.in_(CASE_KINDS), Ticket.status == support.OPEN))
    oldest = s.scalar(
        select(func.min(Ticket.created_at)).where(
            Ticket.kind.in_((support.SUBSCRIBER, *CASE_KINDS)), Ticket.status == support.OPEN
        )
    )
    return Summary(int(counts.get(support.OPEN, 0)), int(counts.get(support.WAITING, 0)), int(cases or 0), oldest)


def ticket(uow: UnitOfWork, ticket_id: int, lock: bool = False) -> Ticket:
    found = uow.session.get(Ticket, ticket_id, with_for_update=lock) if is_id(ticket_id) else None
    if found is None or found.kind not in (support.SUBSCRIBER, *CASE_KINDS):
        raise DomainError(ErrorCode.NOT_FOUND)
    return found


def reply(uow: UnitOfWork, actor: Account, ticket: Ticket, body: str) -> TicketMessage:
    """Answer the subscriber (told by email or SMS in their language); the ticket then waits for them."""
    if is_case(ticket) or ticket.account_id is None:
        raise DomainError(ErrorCode.TICKET_NOT_ANSWERABLE)
    return support.reply(uow, actor, ticket, body)


def note(uow: UnitOfWork, actor: Account, ticket: Ticket, body: str) -> TicketMessage:
    """An internal note: for staff only, never shown to the subscriber and never notified."""
    message = TicketMessage(
        ticket_id=ticket.id,
        author_id=actor.id,
        body=support.checked_text(body, "body", support.BODY_MAX),
        staff=True,
        internal=True,
        created_at=uow.now(),
    )
    uow.session.add(message)
    uow.session.flush()
    audit.record(uow, actor.id, "ticket.noted", f"ticket:{ticket.id}", message=message.id)
    return message


@dataclass(frozen=True)
class TicketView:
    """Everything a ticket's desk page shows."""

    ticket: Ticket
    messages: list[TicketMessage]  # internal notes included
    links: list[TicketLink]
    orders: dict[int, Order]  # linked, those of linked payments, and the case's own order
    payments: dict[int, Payment]
    cases: dict[int, Ticket]
    staff: list[Account]  # who it can be assigned to
    people: dict[int, Account]  # the subscriber, the assignee and the authors


def view(uow: UnitOfWork, ticket_id: int) -> TicketView:
    found = ticket(uow, ticket_id)
    conversation = support.messages(uow, found, internal=True)
    linked = links(uow, found)
    s = uow.session

    def targets(kind: str) -> list[int]:
        return [k.target_id for k in linked if k.target == kind]

    payments = {p.id: p for p in s.scalars(select(Payment).where(Payment.id.in_(targets(LinkTarget.PAYMENT))))}
    order_ids = (
        targets(LinkTarget.ORDER)
        + [p.order_id for p in payments.values()]
        + ([found.order_id] if found.order_id else [])
    )
    return TicketView(
        ticket=found,
        messages=conversation,
        links=linked,
        orders={o.id: o for o in s.scalars(select(Order).where(Order.id.in_(order_ids)))},
        payments=payments,
        cases={t.id: t for t in s.scalars(select(Ticket).where(Ticket.id.in_(targets(LinkTarget.CASE))))},
        staff=desk_staff(uow),
        people=accounts(uow, {found.account_id, found.assignee_id} | {m.author_id for m in conversation}),
    )


def accounts(uow: UnitOfWork, ids: set[int | None]) -> dict[int, Account]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {a.id: a for a in uow.session.scalars(select(Account).where(Account.id.in_(wanted)))}


def desk_staff(uow: UnitOfWork) -> list[Account]:
    """Who a ticket can be assigned to."""
    return list(uow.session.scalars(select(Account).where(Account.role.in_(DESK_ROLES)).order_by(Account.id)).all())


def assign(uow: UnitOfWork, actor: Account, ticket: Ticket, assignee_id: int | None) -> Ticket:
    """Give the ticket to a support or admin staff member (or to nobody, with None)."""
    if assignee_id is not None:
        assignee = uow.session.get(Account, assignee_id) if is_id(assignee_id) else None
        if assignee is None or assignee.role not in DESK_ROLES:
            raise DomainError(ErrorCode.ASSIGNEE_INVALID, field="assignee_id")
    old = ticket.assignee_id
    if old != assignee_id:
        ticket.assignee_id = assignee_id
        audit.record(uow, actor.id, "ticket.assigned", f"ticket:{ticket.id}", old=old, new=assignee_id)
    return ticket


def close(uow: UnitOfWork, actor: Account, ticket: Ticket, reason: str, text: str = "") -> Ticket:
    """Close a subscriber's ticket with a reason code and, optionally, a few words more."""
    if is_case(ticket):
        raise DomainError(ErrorCode.TICKET_NOT_ANSWERABLE)
    if reason not in CLOSE_REASONS:
        raise DomainError(ErrorCode.CLOSE_REASON_INVALID, field="reason")
    cleaned = text.strip()
    if len(cleaned) > NOTE_TEXT_MAX:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="text")
    if ticket.status == support.RESOLVED:
        raise DomainError(ErrorCode.CASE_ALREADY_RESOLVED)
    old = ticket.status
    ticket.status, ticket.close_reason, ticket.resolution = support.RESOLVED, reason, cleaned or None
    ticket.resolved_by, ticket.resolved_at = actor.id, uow.now()
    audit.record(uow, actor.id, "ticket.closed", f"ticket:{ticket.id}", old=old, new=support.RESOLVED, reason=reason)
    return ticket


def links(uow: UnitOfWork, ticket: Ticket) -> list[TicketLink]:
    return list(
        uow.session.scalars(select(TicketLink).where(TicketLink.ticket_id == ticket.id).order_by(TicketLink.id)).all()
    )


def link(uow: UnitOfWork, actor: Account, ticket: Ticket, target: str, target_id: int) -> TicketLink:
    """Say the ticket concerns an order, a payment or a reconciliation case. Linking twice is one link."""
    if target not in LINK_TARGETS:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="target")
    if not _exists(uow, target, target_id) or (target == LinkTarget.CASE and target_id == ticket.id):
        raise DomainError(ErrorCode.LINK_TARGET_NOT_FOUND, field="target_id")
    existing = uow.session.scalars(
        select(TicketLink).where(
            TicketLink.ticket_id == ticket.id, TicketLink.target == target, TicketLink.target_id == target_id
        )
    ).first()
    if existing is not None:
        return existing
    made = TicketLink(
        ticket_id=ticket.id, target=target, target_id=target_id, created_by=actor.id, created_at=uow.now()
    )
    uow.session.add(made)
    uow.session.flush()
    audit.record(uow, actor.id, "ticket.linked", f"ticket:{ticket.id}", concerns=target, concerns_id=target_id)
    return made


def unlink(uow: UnitOfWork, actor: Account, ticket: Ticket, link_id: int) -> None:
    found = uow.session.get(TicketLink, link_id) if is_id(link_id) else None
    if found is None or found.ticket_id != ticket.id:
        raise DomainError(ErrorCode.NOT_FOUND, field="link_id")
    uow.session.execute(delete(TicketLink).where(TicketLink.id == found.id))
    audit.record(
        uow, actor.id, "ticket.unlinked", f"ticket:{ticket.id}", concerns=found.target, concerns_id=found.target_id
    )


def _exists(uow: UnitOfWork, target: str, target_id: int) -> bool:
    if not is_id(target_id):
        return False
    if target == LinkTarget.ORDER:
        return uow.session.get(Order, target_id) is not None
    if target == LinkTarget.PAYMENT:
        return uow.session.get(Payment, target_id) is not None
    case = uow.session.get(Ticket, target_id)
    return case is not None and is_case(case)


def mentioning(
    uow: UnitOfWork, orders: Sequence[int] = (), payments: Sequence[int] = (), cases: Sequence[int] = ()
) -> dict[tuple[str, int], list[int]]:
    """The tickets that concern each order, payment and case: linked by staff, or (for an order)
    opened about it. Keys are (target, id); values ticket ids, oldest first."""
    wanted = {"order": list(orders), "payment": list(payments), "case": list(cases)}
    found: dict[tuple[str, int], set[int]] = {}
    for target, ids in wanted.items():
        if not ids:
            continue
        rows = uow.session.execute(
            select(TicketLink.target_id, TicketLink.ticket_id).where(
                TicketLink.target == target, TicketLink.target_id.in_(ids)
            )
        ).all()
        for target_id, ticket_id in rows:
            found.setdefault((target, target_id), set()).add(ticket_id)
    if orders:
        cases_of = uow.session.execute(
            select(Ticket.order_id, Ticket.id).where(Ticket.order_id.in_(list(orders)), Ticket.kind.in_(CASE_KINDS))
        ).all()
        for order_id, ticket_id in cases_of:
            found.setdefault(("order", order_id or 0), set()).add(ticket_id)
    return {key: sorted(ids) for key, ids in found.items()}


# --- flows: each one transaction, returning rows already loaded (nothing loads after commit) ------


@dataclass(frozen=True)
class QueuePage:
    tickets: list[Ticket]  # oldest first
    people: dict[int, Account]  # the subscribers and the assignees, by id
    latest: dict[int, TicketMessage]  # each ticket's newest reply shown to the subscriber
    next_cursor: str | None


def queue_page(
    transactions: Transactions, viewer: Account, filters: Filters, cursor: str | None, limit: int
) -> QueuePage:
    with transactions() as uow:
        rows, next_cursor = page(
            uow.session, queue(filters, viewer, uow.now()), Ticket.id, cursor, limit, oldest_first=True
        )
        people = accounts(uow, {t.account_id for t in rows} | {t.assignee_id for t in rows})
        return QueuePage(rows, people, support.latest_messages(uow, [t.id for t in rows]), next_cursor)


def shown(transactions: Transactions, ticket_id: int) -> TicketView:
    with transactions() as uow:
        return view(uow, ticket_id)


def _acting(transactions: Transactions, ticket_id: int, action: Callable[[UnitOfWork, Ticket], object]) -> TicketView:
    """One desk action on the locked ticket, and the ticket as it then stands, in one transaction."""
    with transactions() as uow:
        action(uow, ticket(uow, ticket_id, lock=True))
        return view(uow, ticket_id)


def reply_to(transactions: Transactions, actor: Account, ticket_id: int, body: str) -> TicketView:
    return _acting(transactions, ticket_id, lambda uow, t: reply(uow, actor, t, body))


def add_note(transactions: Transactions, actor: Account, ticket_id: int, body: str) -> TicketView:
    return _acting(transactions, ticket_id, lambda uow, t: note(uow, actor, t, body))


def assign_to(transactions: Transactions, actor: Account, ticket_id: int, assignee_id: int | None) -> TicketView:
    return _acting(transactions, ticket_id, lambda uow, t: assign(uow, actor, t, assignee_id))


def close_ticket(transactions: Transactions, actor: Account, ticket_id: int, reason: str, text: str) -> TicketView:
    return _acting(transactions, ticket_id, lambda uow, t: close(uow, actor, t, reason, text))


def add_link(transactions: Transactions, actor: Account, ticket_id: int, target: str, target_id: int) -> TicketView:
    return _acting(transactions, ticket_id, lambda uow, t: link(uow, actor, t, target, target_id))


def remove_link(transactions: Transactions, actor: Account, ticket_id: int, link_id: int) -> TicketView:
    return _acting(transactions, ticket_id, lambda uow, t: unlink(uow, actor, t, link_id))
