"""Usage tests: the default rating groups, which the PostgreSQL half's emptying of every table
between tests removes along with what the migration seeded."""

from __future__ import annotations

import pytest

from duckline.catalog import rating
from duckline.runtime import Runtime


@pytest.fixture(autouse=True)
def _default_rating_groups(request: pytest.FixtureRequest) -> None:
    if "runtime" in request.fixturenames:
        runtime: Runtime = request.getfixturevalue("runtime")
        with runtime.unit_of_work() as uow:
            rating.seed_defaults(uow)
