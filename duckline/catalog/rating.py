"""Rating groups: which allowance a Diameter service draws on. A network element puts each service
of a credit-control request in a Multiple-Services-Credit-Control with a Rating-Group (and
Service-Identifiers); this table says which unit (data bytes, voice seconds, SMS) it is charged
in. The zone comes from the network the element is on, not from here. A row naming a
Service-Identifier applies to that service of the group only and wins over the group's own row.
A rating group with no row is not rated (online charging answers it 5031 RATING_FAILED).

The defaults (seeded by migration 0015m, and by `seed_defaults` for a database emptied since):
10 and 11 data (a packet gateway's default and second bearer), 100 voice (IMS calls, Ro),
200 SMS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select

from duckline.accounts.models import Account
from duckline.catalog.models import RatingGroup
from duckline.catalog.rules import Unit
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.staff import audit

DEFAULTS: tuple[tuple[int, Unit], ...] = (
    (10, Unit.DATA_BYTES),
    (11, Unit.DATA_BYTES),
    (100, Unit.VOICE_SECONDS),
    (200, Unit.SMS),
)
UNSIGNED32 = 2**32 - 1  # Rating-Group and Service-Identifier are Unsigned32


_table = RatingGroup.__table__.c
_EVERY_MAPPING = select(_table.rating_group, _table.service_identifier, _table.unit)


@dataclass(frozen=True)
class Mapping:
    rating_group: int
    service_identifier: int | None
    unit: Unit


def units_for(uow: UnitOfWork, services: Iterable[tuple[int, int | None]]) -> dict[tuple[int, int | None], Unit]:
    """The unit of each (rating group, service identifier) that is rated, in one query; the
    unrated are left out."""
    wanted = set(services)
    if not wanted:
        return {}
    # The whole table (a few rows), in a statement that is the same every time: the Core
    # connection, not the ORM, as online charging asks once per batch.
    rows = uow.session.connection().execute(_EVERY_MAPPING).all()
    known = {(group, service): Unit(unit) for group, service, unit in rows}
    found = {}
    for group, service in wanted:
        unit = known.get((group, service)) if service is not None else None
        unit = unit or known.get((group, None))
        if unit is not None:
            found[(group, service)] = unit
    return found


def mappings(transactions: Transactions) -> list[Mapping]:
    """Every mapping, by rating group then service identifier (the group's own row first)."""
    with transactions() as uow:
        rows = uow.session.scalars(select(RatingGroup)).all()
        found = [Mapping(r.rating_group, r.service_identifier, Unit(r.unit)) for r in rows]
    return sorted(found, key=lambda m: (m.rating_group, m.service_identifier is not None, m.service_identifier or 0))


def _check(rating_group: int, service_identifier: int | None) -> None:
    for field, value in (("rating_group", rating_group), ("service_identifier", service_identifier)):
        if value is not None and not 0 <= value <= UNSIGNED32:
            raise DomainError(ErrorCode.VALIDATION_FAILED, field=field)


def _row(uow: UnitOfWork, rating_group: int, service_identifier: int | None) -> RatingGroup | None:
    service = (
        RatingGroup.service_identifier.is_(None)
        if service_identifier is None
        else RatingGroup.service_identifier == service_identifier
    )
    return uow.session.scalars(
        select(RatingGroup).where(RatingGroup.rating_group == rating_group, service).with_for_update()
    ).one_or_none()


def set_mapping(
    transactions: Transactions, actor: Account, rating_group: int, service_identifier: int | None, unit: Unit
) -> Mapping:
    """Charge a rating group (or one service of it) in `unit` from the next request on; audited."""
    _check(rating_group, service_identifier)
    with transactions() as uow:
        row = _row(uow, rating_group, service_identifier)
        before = row.unit.value if row is not None else None
        if row is None:
            row = RatingGroup(rating_group=rating_group, service_identifier=service_identifier)
            uow.session.add(row)
        row.unit, row.updated_at = unit, uow.now()
        uow.session.flush()
        audit.record(
            uow,
            actor.id,
            "rating_group.set",
            f"rating_group:{_key(rating_group, service_identifier)}",
            old=before,
            new=unit.value,
        )
        return Mapping(rating_group, service_identifier, unit)


def remove_mapping(
    transactions: Transactions, actor: Account, rating_group: int, service_identifier: int | None
) -> None:
    """Stop rating a rating group (or one service of it): its requests get 5031 from now on."""
    _check(rating_group, service_identifier)
    with transactions() as uow:
        row = _row(uow, rating_group, service_identifier)
        if row is None:
            raise DomainError(ErrorCode.NOT_FOUND, field="rating_group")
        before = row.unit.value
        uow.session.execute(delete(RatingGroup).where(RatingGroup.id == row.id))
        audit.record(
            uow, actor.id, "rating_group.removed", f"rating_group:{_key(rating_group, service_identifier)}", old=before
        )


def seed_defaults(uow: UnitOfWork) -> None:
    """Add the default rating groups that have no row of their own (demo data, tests)."""
    present = set(
        uow.session.scalars(select(RatingGroup.rating_group).where(RatingGroup.service_identifier.is_(None))).all()
    )
    uow.session.add_all(
        RatingGroup(rating_group=group, service_identifier=None, unit=unit, updated_at=uow.now())
        for group, unit in DEFAULTS
        if group not in present
    )
    uow.session.flush()


def _key(rating_group: int, service_identifier: int | None) -> str:
    """How the audit log names a mapping: "10", or "10/7" for Service-Identifier 7 of group 10."""
    return f"{rating_group}" + (f"/{service_identifier}" if service_identifier is not None else "")
