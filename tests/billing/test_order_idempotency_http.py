"""One Idempotency-Key sent many times at once, over a real HTTP server on PostgreSQL: every
request gets the same order, none fails, and the provider is asked to create one payment."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.billing.models import Order, Payment, SandboxPayment
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.runtime import Runtime
from tests.factories import numbers, plan_input, register_and_verify, staff
from tests.live_server import serve

REQUESTS = 30
ROUNDS = 3


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    with serve(runtime) as url:
        yield url


def count(runtime: Runtime, table: type[Any]) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table)) or 0)


@pytest.mark.postgres_only
def test_one_idempotency_key_sent_30_times_at_once_makes_one_order_and_one_provider_payment(
    client: TestClient, runtime: Runtime, server: str
) -> None:
    numbers(runtime, 1)
    admin, _ = staff(runtime, Role.ADMIN)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1)))
    subscriber = register_and_verify(client, runtime, 1)
    body = {"line_id": subscriber["line"]["id"], "plan_code": "monthly", "payment_method": "card"}
    for round_ in range(1, ROUNDS + 1):  # the race is short: run it a few times over
        headers = {**subscriber["headers"], "Idempotency-Key": f"one-key-for-thirty-requests-{round_}"}
        start = threading.Barrier(REQUESTS)

        def send(_: int, headers: dict[str, str] = headers, start: threading.Barrier = start) -> httpx.Response:
            with httpx.Client(base_url=server, timeout=60) as http:
                start.wait()
                return http.post("/api/v1/orders", json=body, headers=headers)

        with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
            answers = list(pool.map(send, range(REQUESTS)))

        assert sorted(a.status_code for a in answers) == [200] * (REQUESTS - 1) + [201], [
            (a.status_code, a.text[:200]) for a in answers if a.status_code >= 300
        ]
        bodies = [a.json() for a in answers]
        assert all(b == bodies[0] for b in bodies), "every request gets the same answer"
        [payment] = bodies[0]["payments"]
        assert payment["status"] == "pending" and payment["next_action"]["type"] == "redirect"
        assert (count(runtime, Order), count(runtime, Payment), count(runtime, SandboxPayment)) == (round_,) * 3
