"""The support tables. Rows are plain records; the rules that change them live beside them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from duckline.db.base import Base
from duckline.db.types import BigId, enum_column
from duckline.support.states import LinkTarget, TicketKind, TicketStatus


class Ticket(Base):
    """A support case, opened by a subscriber or by reconciliation."""

    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[TicketKind] = mapped_column(enum_column(TicketKind, 30))
    status: Mapped[TicketStatus] = mapped_column(enum_column(TicketStatus, 10))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    # Cases that Duckline opens keep what they say as a topic and its parameters, so each reader
    # sees them in their own language (subject and body keep the English text); see case_texts.
    topic: Mapped[str | None] = mapped_column(String(40))
    params: Mapped[dict[str, Any] | None]
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    # The support desk: who is on it, and why it was closed (answered, duplicate, …; see support_desk).
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    close_reason: Mapped[str | None] = mapped_column(String(30))
    __table_args__ = (Index("ix_tickets_status", "status", "kind", "id"),)


class TicketMessage(Base):
    """One reply in a support ticket's conversation (the ticket's body is its opening message)."""

    __tablename__ = "ticket_messages"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    body: Mapped[str] = mapped_column(Text)
    staff: Mapped[bool] = mapped_column(Boolean, default=False)  # written by support, not the subscriber
    # A note between staff: never shown to the subscriber, never notified.
    internal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime]
    __table_args__ = (Index("ix_ticket_messages_ticket", "ticket_id", "id"),)


class TicketLink(Base):
    """What a ticket concerns: an order, a payment or a reconciliation case (a ticket), added by staff."""

    __tablename__ = "ticket_links"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    target: Mapped[LinkTarget] = mapped_column(enum_column(LinkTarget, 10))
    target_id: Mapped[int] = mapped_column(BigId)
    created_by: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("ticket_id", "target", "target_id"),
        Index("ix_ticket_links_target", "target", "target_id"),
    )
