"""Bounded request values: what a route accepts is what the database can hold.

Out of range is a 422 `validation_failed` naming the field, decided before any query runs: a
number the database cannot store never reaches it. Ids are BIGINT (up to 2**63 - 1); counts kept
in INTEGER columns stop at 2**31 - 1; money in minor units and quantities stop far below the
BIGINT limit, so that sums of many of them cannot overflow either; dates in report filters stay
within years a report can mean.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import Path, Query
from pydantic import Field, StrictInt

from duckline.db.types import MAX_ID

INT32_MAX = 2**31 - 1
MAX_MINOR_UNITS = 10**12  # HK$10 billion in cents: beyond any price, discount or refund
MAX_QUANTITY = 10**15  # a petabyte, or 31 million years of calls: beyond any allowance or record
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2999, 12, 31)

RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Count = Annotated[int, Field(ge=1, le=INT32_MAX)]
MinorUnits = Annotated[int, Field(ge=0, le=MAX_MINOR_UNITS, description="minor units, e.g. cents")]
PositiveMinorUnits = Annotated[int, Field(gt=0, le=MAX_MINOR_UNITS, description="minor units, e.g. cents")]
Amount = Annotated[int, Field(gt=0, le=MAX_QUANTITY)]
# JSON `true` or `1.5` is not a count of anything: only a JSON integer is.
Quantity = Annotated[StrictInt, Field(ge=0, le=MAX_QUANTITY)]
Day = Annotated[date, Field(ge=EARLIEST_DAY, le=LATEST_DAY, description="a date from 2000-01-01 to 2999-12-31")]
Cursor = Annotated[str | None, Query(max_length=100, description="the next_cursor of the previous page")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", max_length=3, description="ISO 4217, e.g. HKD")]
Phone = Annotated[str, Field(max_length=30)]
# Texts in each language (en, zh_Hant, zh_Hans), stored as JSON: a few, each of a readable length.
Texts = Annotated[
    dict[Annotated[str, Field(max_length=10)], Annotated[str, Field(max_length=2000)]], Field(max_length=10)
]
