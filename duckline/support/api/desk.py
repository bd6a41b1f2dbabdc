"""The staff support desk over the API: the queue (subscriber tickets and reconciliation cases that
need a person, oldest first), and a ticket's conversation with internal notes, reply, assignment,
closing with a reason and links. Support and admin roles only; every change is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field

from duckline.accounts.models import Account
from duckline.support import cases as tickets
from duckline.support import conversations as support
from duckline.support import desk as support_desk
from duckline.support.models import Ticket, TicketLink, TicketMessage
from duckline.web.deps import RuntimeDep, language, require_roles
from duckline.web.fields import Cursor, PathId, RowId
from duckline.web.openapi import errors
from duckline.web.schemas import Page

router = APIRouter(prefix="/desk/tickets", tags=["support desk"])
Desk = Annotated[Account, Depends(require_roles(support_desk.DESK_ROLES))]
Language = Annotated[str, Depends(language)]


class DeskMessageOut(BaseModel):
    id: int
    author_id: int
    staff: bool = Field(description="written by staff")
    internal: bool = Field(description="an internal note: staff only, never shown to the subscriber")
    body: str
    created_at: datetime

    @classmethod
    def of(cls, m: TicketMessage) -> DeskMessageOut:
        return cls(
            id=m.id, author_id=m.author_id, staff=m.staff, internal=m.internal, body=m.body, created_at=m.created_at
        )


class LinkOut(BaseModel):
    id: int
    target: str = Field(description="order, payment or case")
    target_id: int
    created_at: datetime

    @classmethod
    def of(cls, link: TicketLink) -> LinkOut:
        return cls(id=link.id, target=link.target, target_id=link.target_id, created_at=link.created_at)


class DeskTicketOut(BaseModel):
    id: int
    kind: str = Field(description="subscriber, or a reconciliation case (reconciliation, payment_mismatch)")
    status: str = Field(description="open, waiting (for the subscriber) or closed")
    subject: str = Field(description="in the reader's language for cases Duckline opened")
    body: str
    topic: str | None
    account_id: int | None
    subscriber_language: str | None
    order_id: int | None
    assignee_id: int | None
    close_reason: str | None
    resolution: str | None
    created_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, t: Ticket, owner: Account | None, reader_language: str) -> DeskTicketOut:
        subject, body, resolution = tickets.describe(t, reader_language)
        return cls(
            id=t.id,
            kind=t.kind,
            status=support_desk.desk_status(t),
            subject=subject,
            body=body,
            topic=t.topic,
            account_id=t.account_id,
            subscriber_language=owner.language if owner else None,
            order_id=t.order_id,
            assignee_id=t.assignee_id,
            close_reason=t.close_reason,
            resolution=resolution,
            created_at=t.created_at,
            resolved_at=t.resolved_at,
        )


class DeskTicketDetailOut(DeskTicketOut):
    messages: list[DeskMessageOut] = Field(description="oldest first, internal notes included")
    links: list[LinkOut]


class TextIn(BaseModel):
    body: str = Field(min_length=1, max_length=support.BODY_MAX)


class AssignIn(BaseModel):
    assignee_id: RowId | None = Field(description="a support or admin account; null for nobody")


class CloseIn(BaseModel):
    reason: Literal["answered", "duplicate", "no_response", "resolved_by_action"]
    text: str = Field(default="", max_length=support_desk.NOTE_TEXT_MAX, description="optional, staff only")


class LinkIn(BaseModel):
    target: Literal["order", "payment", "case"]
    target_id: RowId


def _detail(shown: support_desk.TicketView, reader_language: str) -> DeskTicketDetailOut:
    ticket = shown.ticket
    summary = DeskTicketOut.of(ticket, shown.people.get(ticket.account_id or 0), reader_language)
    return DeskTicketDetailOut(
        **summary.model_dump(),
        messages=[DeskMessageOut.of(m) for m in shown.messages],
        links=[LinkOut.of(link) for link in shown.links],
    )


@router.get("", response_model=Page[DeskTicketOut])
def queue(
    runtime: RuntimeDep,
    actor: Desk,
    reader_language: Language,
    status_: Annotated[
        Literal["open", "waiting", "closed", "all"], Query(alias="status", description="default: open")
    ] = "open",
    older_than_days: Annotated[int | None, Query(ge=0, le=3650)] = None,
    topic: Annotated[Literal["billing", "renewal", "line", "account", "other"] | None, Query()] = None,
    subscriber_language: Annotated[Literal["en", "zh_Hant", "zh_Hans"] | None, Query(alias="language")] = None,
    assigned: Annotated[Literal["me", "unassigned", "anyone"], Query()] = "anyone",
    kind: Annotated[Literal["subscriber", "case"] | None, Query()] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[DeskTicketOut]:
    """Subscriber tickets and reconciliation cases that need a person, oldest first."""
    filters = support_desk.Filters(
        status=None if status_ == "all" else status_,
        older_than_days=older_than_days,
        topic=topic,
        language=subscriber_language,
        assigned=assigned,
        kind=kind,
    )
    found = support_desk.queue_page(runtime.unit_of_work, actor, filters, cursor, limit)
    return Page[DeskTicketOut](
        items=[DeskTicketOut.of(t, found.people.get(t.account_id or 0), reader_language) for t in found.tickets],
        next_cursor=found.next_cursor,
    )


@router.get("/{ticket_id}", response_model=DeskTicketDetailOut)
def get_ticket(ticket_id: PathId, runtime: RuntimeDep, actor: Desk, reader_language: Language) -> DeskTicketDetailOut:
    """The ticket, its whole conversation with internal notes, and what it concerns."""
    return _detail(support_desk.shown(runtime.unit_of_work, ticket_id), reader_language)


@router.post(
    "/{ticket_id}/replies",
    status_code=status.HTTP_201_CREATED,
    response_model=DeskTicketDetailOut,
    responses=errors(409),
)
def reply(
    ticket_id: PathId, body: TextIn, runtime: RuntimeDep, actor: Desk, reader_language: Language
) -> DeskTicketDetailOut:
    """Answer the subscriber (told by SMS or email in their language); the ticket waits for them.
    409 ticket_not_answerable for a reconciliation case."""
    return _detail(support_desk.reply_to(runtime.unit_of_work, actor, ticket_id, body.body), reader_language)


@router.post("/{ticket_id}/notes", status_code=status.HTTP_201_CREATED, response_model=DeskTicketDetailOut)
def note(
    ticket_id: PathId, body: TextIn, runtime: RuntimeDep, actor: Desk, reader_language: Language
) -> DeskTicketDetailOut:
    """An internal note: staff only, never shown to the subscriber, nobody is notified."""
    return _detail(support_desk.add_note(runtime.unit_of_work, actor, ticket_id, body.body), reader_language)


@router.put("/{ticket_id}/assignee", response_model=DeskTicketDetailOut)
def assign(
    ticket_id: PathId, body: AssignIn, runtime: RuntimeDep, actor: Desk, reader_language: Language
) -> DeskTicketDetailOut:
    """Assign to a support or admin staff member (yourself included), or to nobody."""
    return _detail(support_desk.assign_to(runtime.unit_of_work, actor, ticket_id, body.assignee_id), reader_language)


@router.post("/{ticket_id}/close", response_model=DeskTicketDetailOut, responses=errors(409))
def close(
    ticket_id: PathId, body: CloseIn, runtime: RuntimeDep, actor: Desk, reader_language: Language
) -> DeskTicketDetailOut:
    """Close a subscriber's ticket with a reason. 409 if it is already closed, or for a
    reconciliation case (resolved through /reconciliation/cases)."""
    return _detail(
        support_desk.close_ticket(runtime.unit_of_work, actor, ticket_id, body.reason, body.text), reader_language
    )


@router.post("/{ticket_id}/links", status_code=status.HTTP_201_CREATED, response_model=DeskTicketDetailOut)
def link(
    ticket_id: PathId, body: LinkIn, runtime: RuntimeDep, actor: Desk, reader_language: Language
) -> DeskTicketDetailOut:
    """Say the ticket concerns an order, a payment or a reconciliation case (linking twice is one link)."""
    return _detail(
        support_desk.add_link(runtime.unit_of_work, actor, ticket_id, body.target, body.target_id), reader_language
    )


@router.delete("/{ticket_id}/links/{link_id}", response_model=DeskTicketDetailOut)
def unlink(
    ticket_id: PathId, link_id: PathId, runtime: RuntimeDep, actor: Desk, reader_language: Language
) -> DeskTicketDetailOut:
    """Remove a link."""
    return _detail(support_desk.remove_link(runtime.unit_of_work, actor, ticket_id, link_id), reader_language)
