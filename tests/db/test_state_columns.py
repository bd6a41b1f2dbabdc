"""State columns hold their enum's values (not its member names) in a VARCHAR that fits them all."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Enum as SAEnum

from duckline.db.models import Base


def enum_columns() -> list[tuple[str, SAEnum]]:
    return [
        (f"{table.name}.{column.name}", column.type)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, SAEnum)
    ]


def test_every_state_column_stores_its_members_values_and_fits_the_longest() -> None:
    columns = enum_columns()
    assert {"tickets.status", "refunds.status", "notifications.status", "credit_sessions.status"} <= {
        name for name, _ in columns
    }
    for name, column in columns:
        enum = column.enum_class
        assert enum is not None and issubclass(enum, StrEnum), name
        assert column.enums == [member.value for member in enum], name
        assert not column.native_enum, name  # a VARCHAR: adding a member needs no type migration
        assert column.length is not None and max(len(member) for member in enum) <= column.length, name
