"""Staff look a subscriber up by number, name (English or Chinese) or email.

Identity document numbers are never searched or returned in clear: only their masked form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select

from duckline.accounts.identity import KycStatus
from duckline.accounts.models import Account, Person
from duckline.accounts.phone import normalise_mobile, normalise_pool_number
from duckline.accounts.roles import Role
from duckline.core.errors import DomainError
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line

MAX_QUERY = 100
_NUMBER_LIKE = re.compile(r"^[\d\s+()\-.]+$")
MIN_PARTIAL_DIGITS = 4


@dataclass(frozen=True)
class Match:
    account_id: int
    phone: str
    email: str | None
    name_en: str | None
    name_zh: str | None
    document_masked: str | None
    kyc_status: KycStatus | None
    msisdns: tuple[str, ...]
    created_at: datetime


def as_number(text: str, uow: UnitOfWork) -> str | None:
    """The E.164 form of a number written any usual way (+852 5123 4567, 51234567), if it is one."""
    if not _NUMBER_LIKE.match(text):
        return None
    settings = uow.settings
    try:
        return normalise_mobile(text, settings.allowed_regions, settings.default_region)
    except DomainError:
        pass
    try:
        return normalise_pool_number(text, settings.default_region)
    except DomainError:
        return None


def search(uow: UnitOfWork, query: str, limit: int = 50) -> list[Match]:
    """Subscribers whose phone or line number, name or email matches `query`, newest first."""
    text = " ".join(query.split())[:MAX_QUERY]
    if not text:
        return []
    conditions: list[ColumnElement[bool]] = [
        Person.name_en.icontains(text, autoescape=True),
        Person.name_zh.contains(text, autoescape=True),
        Account.email.icontains(text, autoescape=True),
    ]
    number = as_number(text, uow)
    if number is not None:
        conditions += [Account.phone == number, Account.id.in_(select(Line.account_id).where(Line.msisdn == number))]
    elif _NUMBER_LIKE.match(text):
        digits = re.sub(r"\D", "", text)
        if len(digits) >= MIN_PARTIAL_DIGITS:  # part of a number: match anywhere in it
            conditions += [
                Account.phone.contains(digits, autoescape=True),
                Account.id.in_(select(Line.account_id).where(Line.msisdn.contains(digits, autoescape=True))),
            ]
    rows = uow.session.execute(
        select(Account, Person)
        .outerjoin(Person, Person.id == Account.person_id)
        .where(Account.role == Role.SUBSCRIBER, or_(*conditions))
        .order_by(Account.id.desc())
        .limit(limit)
    ).all()
    ids = [account.id for account, _ in rows]
    numbers: dict[int, list[str]] = {account_id: [] for account_id in ids}
    if ids:
        for account_id, msisdn in uow.session.execute(
            select(Line.account_id, Line.msisdn).where(Line.account_id.in_(ids)).order_by(Line.id)
        ):
            numbers[account_id].append(msisdn)
    return [
        Match(
            account_id=account.id,
            phone=account.phone,
            email=account.email,
            name_en=person.name_en if person else None,
            name_zh=person.name_zh if person else None,
            document_masked=person.document_masked if person else None,
            kyc_status=person.kyc_status if person else None,
            msisdns=tuple(numbers[account.id]),
            created_at=account.created_at,
        )
        for account, person in rows
    ]
