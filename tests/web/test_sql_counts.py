"""The counting headers bench/renewals.py reads: statements, BEGIN…COMMIT transactions, and the
statements that ran on their own (Database.reads: autocommit on PostgreSQL)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from duckline.runtime import Runtime
from duckline.web import sql_counts
from duckline.web.app import create_app


def counts(response: object) -> tuple[int, int, int]:
    headers = response.headers  # type: ignore[attr-defined]
    return (
        int(headers["x-duckline-statements"]),
        int(headers["x-duckline-transactions"]),
        int(headers["x-duckline-autocommit"]),
    )


def test_counts_statements_and_transactions(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sql_counts.ENV, "1")
    with TestClient(create_app(runtime=runtime), base_url="http://127.0.0.1") as client:
        plans = client.get("/api/v1/plans")  # one transaction of its own
        caller = client.get("/api/v1/me", headers={"Authorization": "Bearer no-such-token"})  # the lookup only
    assert plans.status_code == 200
    statements, transactions, alone = counts(plans)
    assert statements >= 1 and transactions == 1 and alone == 0
    assert caller.status_code == 401
    if runtime.db.is_sqlite:  # SQLite reads in its usual transaction, opened by BEGIN IMMEDIATE
        assert counts(caller) == (2, 1, 0)
    else:  # PostgreSQL: one statement, no BEGIN or COMMIT
        assert counts(caller) == (1, 0, 1)


def test_nothing_counted_when_off(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sql_counts.ENV, raising=False)
    with TestClient(create_app(runtime=runtime), base_url="http://127.0.0.1") as client:
        response = client.get("/api/v1/plans")
    assert response.status_code == 200 and "x-duckline-statements" not in response.headers
