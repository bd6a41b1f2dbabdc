"""Request and response bodies every feature's API shares (a page of results, money); each
feature keeps its own in its package's schemas.py. Separate from the tables on purpose."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field, field_validator

from duckline.core.money import Money
from duckline.web.fields import MAX_MINOR_UNITS, Currency

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as ?cursor= to get the next page; null on the last")


class MoneyOut(BaseModel):
    # Signed here: a negative price is refused by the catalogue's own rule, with its own code.
    amount: int = Field(ge=-MAX_MINOR_UNITS, le=MAX_MINOR_UNITS, description="minor units, e.g. cents")
    currency: Currency

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        Money(0, value)  # raises ValueError (a 422) for anything that is not an ISO 4217 code
        return value
