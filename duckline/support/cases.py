"""Support cases. Reconciliation opens them so that staff see every case it handled or could not."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import UnitOfWork
from duckline.staff import audit
from duckline.support import case_texts
from duckline.support.models import Ticket
from duckline.support.states import TicketKind, TicketStatus

RECONCILIATION = TicketKind.RECONCILIATION
PAYMENT_MISMATCH = TicketKind.PAYMENT_MISMATCH


def open_ticket(
    uow: UnitOfWork,
    kind: TicketKind,
    subject: str,
    body: str,
    account_id: int | None,
    order_id: int | None,
    resolved: bool = False,
    resolution: str | None = None,
    topic: str | None = None,
    params: dict[str, Any] | None = None,
) -> Ticket:
    ticket = Ticket(
        account_id=account_id,
        order_id=order_id,
        kind=kind,
        status=TicketStatus.RESOLVED if resolved else TicketStatus.OPEN,
        subject=subject,
        body=body,
        topic=topic,
        params=params,
        resolution=resolution,
        created_at=uow.now(),
        resolved_at=uow.now() if resolved else None,
    )
    uow.session.add(ticket)
    uow.session.flush()
    return ticket


def open_case(
    uow: UnitOfWork,
    kind: TicketKind,
    topic: str,
    params: dict[str, Any],
    account_id: int | None,
    order_id: int | None,
    resolution: str | None = None,
) -> Ticket:
    """A case Duckline opens itself (already resolved when `resolution` says what was done)."""
    subject, body = case_texts.render(topic, params, "en")
    return open_ticket(
        uow, kind, subject, body, account_id, order_id, resolution is not None, resolution, topic, params
    )


def describe(ticket: Ticket, language: str) -> tuple[str, str, str | None]:
    """(subject, body, resolution) in the reader's language; what a person wrote stays as written."""
    if ticket.topic in case_texts.TEXTS:
        subject, body = case_texts.render(ticket.topic, ticket.params or {}, language)
    else:
        subject, body = ticket.subject, ticket.body
    return subject, body, case_texts.resolution(ticket.resolution, language)


def resolve(uow: UnitOfWork, actor: Account, ticket: Ticket, resolution: str) -> Ticket:
    if not resolution.strip():
        raise DomainError(ErrorCode.REASON_REQUIRED, field="reason")
    if ticket.status == TicketStatus.RESOLVED:
        raise DomainError(ErrorCode.CASE_ALREADY_RESOLVED)
    ticket.status, ticket.resolution = TicketStatus.RESOLVED, resolution.strip()
    ticket.resolved_by, ticket.resolved_at = actor.id, uow.now()
    audit.record(uow, actor.id, "ticket.resolved", f"ticket:{ticket.id}", resolution=ticket.resolution)
    return ticket


def settle_open(uow: UnitOfWork, order_id: int, resolution: str) -> int:
    """Close the order's open cases that an automatic action has just settled."""
    settled = 0
    for ticket in uow.session.scalars(
        select(Ticket).where(Ticket.order_id == order_id, Ticket.status == TicketStatus.OPEN)
    ):
        ticket.status, ticket.resolution, ticket.resolved_at = TicketStatus.RESOLVED, resolution, uow.now()
        settled += 1
    return settled


def settle_topics(uow: UnitOfWork, order_id: int, topics: frozenset[str], resolution: str) -> int:
    """Close the order's open cases about one of `topics`: what they asked for has just happened."""
    settled = 0
    for ticket in uow.session.scalars(
        select(Ticket).where(Ticket.order_id == order_id, Ticket.status == TicketStatus.OPEN, Ticket.topic.in_(topics))
    ):
        ticket.status, ticket.resolution, ticket.resolved_at = TicketStatus.RESOLVED, resolution, uow.now()
        settled += 1
    return settled
