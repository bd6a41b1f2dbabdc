"""The subscriber's settings page as flows: what it shows, and the switches of their own lines
(features, automatic renewal). Contact details and preferences are accounts.contacts' flows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from duckline.accounts import contacts, security
from duckline.accounts.models import Account, ContactChange
from duckline.billing.models import SavedPaymentMethod
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.lines.states import LineStatus


@dataclass(frozen=True)
class LineSettings:
    line: Line
    renewal_method: SavedPaymentMethod | None  # what automatic renewal would charge


@dataclass(frozen=True)
class SettingsView:
    me: Account  # as it now stands, not as the session loaded it
    lines: list[LineSettings]  # the account's lines not yet recycled, oldest first
    pending: dict[str, ContactChange | None]  # by kind: the email or phone change waiting for its code
    proof_until: datetime | None  # this session's fresh proof, if any


def settings_of(transactions: Transactions, viewer: Account, token: str | None) -> SettingsView:
    with transactions() as uow:
        me = uow.session.get(Account, viewer.id) or viewer
        own = uow.session.scalars(
            select(Line).where(Line.account_id == me.id, Line.status != LineStatus.RECYCLED).order_by(Line.id)
        ).all()
        return SettingsView(
            me=me,
            lines=[LineSettings(line, lines.renewal_method(uow, me, line)) for line in own],
            pending={kind: contacts.pending_change(uow, me, kind) for kind in (contacts.EMAIL, contacts.PHONE)},
            proof_until=security.proof_valid_until(uow, token),
        )


def set_line_features(
    transactions: Transactions, viewer: Account, line_id: int, voicemail: bool, caller_id: bool
) -> None:
    with transactions() as uow:
        lines.set_features(uow, viewer, _own_line(uow, viewer, line_id), voicemail, caller_id)


def set_line_auto_renew(transactions: Transactions, viewer: Account, line_id: int, enabled: bool) -> None:
    with transactions() as uow:
        lines.set_auto_renew(uow, viewer, _own_line(uow, viewer, line_id), enabled)


def _own_line(uow: UnitOfWork, viewer: Account, line_id: int) -> Line:
    """Settings change the viewer's own lines only (staff use the console for others')."""
    line = lines.visible_line(uow, viewer, line_id)
    if line.account_id != viewer.id:
        raise DomainError(ErrorCode.NOT_FOUND)
    return line
