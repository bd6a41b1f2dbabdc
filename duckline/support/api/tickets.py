"""Support tickets: subscribers open them and reply; staff see them all and answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from duckline.support import conversations as support
from duckline.support.models import Ticket, TicketMessage
from duckline.web.deps import RuntimeDep, Subscriber, SubscriberOrStaff
from duckline.web.fields import Cursor, PathId
from duckline.web.openapi import errors
from duckline.web.schemas import Page

router = APIRouter(prefix="/tickets", tags=["support"])


class TicketIn(BaseModel):
    subject: str = Field(min_length=1, max_length=support.SUBJECT_MAX)
    body: str = Field(min_length=1, max_length=support.BODY_MAX)
    topic: Literal["billing", "renewal", "line", "account", "other"] | None = Field(
        default=None, description="what it is about (the support desk sorts by it)"
    )


class MessageIn(BaseModel):
    body: str = Field(min_length=1, max_length=support.BODY_MAX)
    resolve: bool = Field(default=False, description="staff: mark the ticket resolved with this reply")


class MessageOut(BaseModel):
    id: int
    author_id: int
    staff: bool = Field(description="written by support staff")
    body: str
    created_at: datetime

    @classmethod
    def of(cls, m: TicketMessage) -> MessageOut:
        return cls(id=m.id, author_id=m.author_id, staff=m.staff, body=m.body, created_at=m.created_at)


class TicketOut(BaseModel):
    id: int
    kind: str
    status: str = Field(description="open, waiting (support replied; the subscriber's turn) or resolved")
    subject: str
    body: str = Field(description="the opening message")
    account_id: int | None
    created_at: datetime
    resolved_at: datetime | None
    last_reply_at: datetime | None
    last_reply_by_staff: bool | None

    @classmethod
    def of(cls, t: Ticket, last: TicketMessage | None) -> TicketOut:
        return cls(
            id=t.id,
            kind=t.kind,
            status=t.status,
            subject=t.subject,
            body=t.body,
            account_id=t.account_id,
            created_at=t.created_at,
            resolved_at=t.resolved_at,
            last_reply_at=last.created_at if last else None,
            last_reply_by_staff=last.staff if last else None,
        )


class TicketDetailOut(TicketOut):
    messages: list[MessageOut]


def _detail(ticket: Ticket, messages: list[TicketMessage]) -> TicketDetailOut:
    summary = TicketOut.of(ticket, messages[-1] if messages else None)
    return TicketDetailOut(**summary.model_dump(), messages=[MessageOut.of(m) for m in messages])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TicketDetailOut)
def open_ticket(body: TicketIn, runtime: RuntimeDep, account: Subscriber) -> TicketDetailOut:
    """Ask support something; the answer arrives here and by SMS or email."""
    return _detail(support.start_ticket(runtime.unit_of_work, account, body.subject, body.body, body.topic), [])


@router.get("", response_model=Page[TicketOut])
def list_tickets(
    runtime: RuntimeDep,
    account: SubscriberOrStaff,
    state: Annotated[str, Query(pattern="^(open|waiting|resolved|all)$")] = "all",
    kind: Annotated[str | None, Query(max_length=30)] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[TicketOut]:
    """The caller's tickets, newest first; staff get every ticket (?state=, ?kind= to filter)."""
    chosen = None if state == "all" else state
    found = support.ticket_list(runtime.unit_of_work, account, cursor, limit, chosen, kind)
    return Page[TicketOut](
        items=[TicketOut.of(t, found.latest.get(t.id)) for t in found.tickets], next_cursor=found.next_cursor
    )


@router.get("/{ticket_id}", response_model=TicketDetailOut)
def get_ticket(ticket_id: PathId, runtime: RuntimeDep, account: SubscriberOrStaff) -> TicketDetailOut:
    """The ticket and its whole conversation, oldest message first."""
    shown = support.thread(runtime.unit_of_work, account, ticket_id)
    return _detail(shown.ticket, shown.messages)


@router.post(
    "/{ticket_id}/messages", status_code=status.HTTP_201_CREATED, response_model=TicketDetailOut, responses=errors(409)
)
def add_message(ticket_id: PathId, body: MessageIn, runtime: RuntimeDep, account: SubscriberOrStaff) -> TicketDetailOut:
    """Reply. A staff reply notifies the subscriber; a subscriber's reply reopens a resolved ticket."""
    shown = support.answer(runtime.unit_of_work, account, ticket_id, body.body, body.resolve)
    return _detail(shown.ticket, shown.messages)
