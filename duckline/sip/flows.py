"""The SIP account flows the API and the pages call: each owns its transaction and returns plain data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from duckline.accounts.models import Account
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.sip import accounts


@dataclass(frozen=True)
class SipDetails:
    line: Line
    username: str
    domain: str
    server: str
    password_changed_at: datetime


@dataclass(frozen=True)
class SipReset:
    details: SipDetails
    password: str  # shown once
    provisioning_uri: str  # holds the password too: shown once, as a QR code


def details(transactions: Transactions, viewer: Account, line_id: int) -> SipDetails:
    """Where and as whom a line's phone registers; never its password or hashes. Staff may look."""
    with transactions() as uow:
        line = lines.visible_line(uow, viewer, line_id)
        account = accounts.account_of(uow, line)
        if account is None:
            raise DomainError(ErrorCode.SIP_ACCOUNT_MISSING)
        return SipDetails(line, account.username, account.domain, uow.settings.sip_server, account.password_changed_at)


def reset_password(transactions: Transactions, viewer: Account, line_id: int) -> SipReset:
    """A new SIP password for one of the viewer's own lines (anyone else's, staff's included, is
    not found: a password is for the subscriber's eyes only)."""
    with transactions() as uow:
        line = _own_line(uow, viewer, line_id)
        made = accounts.reset_password(uow, viewer, line)
        account = made.account
        shown = SipDetails(line, account.username, account.domain, uow.settings.sip_server, account.password_changed_at)
        uri = accounts.provisioning_uri(account.username, made.password, account.domain)
        return SipReset(shown, made.password, uri)


def _own_line(uow: UnitOfWork, viewer: Account, line_id: int) -> Line:
    line = lines.visible_line(uow, viewer, line_id)
    if line.account_id != viewer.id:
        raise DomainError(ErrorCode.NOT_FOUND)
    return line
