"""The whole OpenAPI, fuzzed: every operation, with valid and invalid data that schemathesis
derives from the document, sent over HTTP to a real server on loopback, must never answer 5xx
and must answer only statuses its document lists.

Each operation is called as whoever may call it: a subscriber (and an admin, where staff see more),
an admin for staff operations, the network element for usage batches, nobody for public ones.
The run is bounded and seeded, so it is reproducible and fits the suite (SQLite only):

    DUCKLINE_FUZZ_EXAMPLES   examples per operation, caller and mode (valid / invalid); default 10
    DUCKLINE_FUZZ_SEED       the Hypothesis seed; default 20261124
    DUCKLINE_FUZZ_DATABASE   a database URL to fuzz instead of a fresh SQLite file (e.g. PostgreSQL,
                             migrated and empty): for longer runs by hand

It prints the operations, requests sent and failures found (`pytest -s` shows them).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance
from sqlalchemy import select

from duckline.accounts import service as accounts
from duckline.accounts.models import Account
from duckline.core.config import Settings
from duckline.runtime import Runtime
from duckline.staff import demo
from duckline.web.app import create_app
from tests.live_server import serve

EXAMPLES = int(os.environ.get("DUCKLINE_FUZZ_EXAMPLES", "10"))
SEED = int(os.environ.get("DUCKLINE_FUZZ_SEED", "20261124"))
CHECKS = [not_a_server_error, status_code_conformance]


LOGOUT = "/api/v1/auth/logout"


@dataclass
class Report:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, list[str]] = field(default_factory=dict)
    refused_credentials: int = 0  # 401s answered to a caller who sent a token

    def fail(self, label: str, problem: str) -> None:
        found = self.failures.setdefault(label, [])
        if len(found) < 3:
            found.append(problem)


@pytest.fixture
def fuzz_runtime(tmp_path: Path, sqlite_template: Path) -> Iterator[Runtime]:
    url = os.environ.get("DUCKLINE_FUZZ_DATABASE")
    if not url:
        shutil.copy(sqlite_template, tmp_path / "fuzz.db")
        url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    runtime = Runtime(
        Settings(
            environment="test",
            database_url=url,
            secret_key="fuzz-secret-key-that-is-long-enough-0123456789",
            data_key="fuzz-data-key-that-is-long-enough-0123456789",
            log_dir=tmp_path / "var",
            login_rate_limit="100000/minute",  # the fuzzer must reach the rules behind the limits
            otp_rate_limit="100000/minute",
            otp_max_sends_per_hour=100000,
            otp_max_sends_per_day=100000,
            otp_address_rate_limit="100000/hour",
            password_time_cost=1,
            password_memory_kib=1024,
        )
    )
    yield runtime
    runtime.close()


@pytest.fixture
def live_server(fuzz_runtime: Runtime) -> Iterator[str]:
    with serve(fuzz_runtime, log_level="critical") as url:
        yield url


def credentials(runtime: Runtime) -> dict[str, dict[str, str]]:
    """Fresh bearer tokens of the demo's admin, one of its subscribers and its network element.
    Fresh for each operation: fuzzing `POST /auth/logout` revokes the token it is sent with."""
    with runtime.unit_of_work() as uow:
        phones = {"admin": demo.STAFF[0][0], "subscriber": demo.SUBSCRIBERS[0].phone, "network": demo.NETWORK_PHONE}
        tokens = {
            who: accounts.issue_token(
                uow, uow.session.scalars(select(Account).where(Account.phone == phone)).one(), "fuzz", None
            )
            for who, phone in phones.items()
        }
    return {who: {"Authorization": f"Bearer {token}"} for who, token in tokens.items()} | {"nobody": {}}


def callers(operation: dict[str, Any]) -> list[str]:
    """Who calls an operation: from its security and x-roles in the document."""
    roles = operation.get("x-roles", [])
    if roles:
        return ["network"] if roles == ["network"] else ["admin"]
    if operation.get("security"):
        return ["subscriber", "admin"]
    return ["nobody"]


def fuzz(
    operation: schemathesis.APIOperation, who: str, headers: dict[str, str], base_url: str, report: Report
) -> None:
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        with suppress(Unsatisfiable):  # nothing can be invalid about an operation without parameters
            fuzz_mode(operation, f"{who} {mode.value}", headers, base_url, report, mode)


def fuzz_mode(
    operation: schemathesis.APIOperation,
    who: str,
    headers: dict[str, str],
    base_url: str,
    report: Report,
    mode: GenerationMode,
) -> None:
    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
        except Exception as exc:  # a dropped connection is a server failure too
            report.fail(operation.label, f"{who}: {type(exc).__name__}: {exc}")
            return
        report.sent += 1
        report.statuses[response.status_code] += 1
        if response.status_code == 401 and headers and operation.path != LOGOUT:
            report.refused_credentials += 1  # (logout's later examples send the token its first one revoked)
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # collected, so that one run reports every failure
            body = response.text[:300].replace("\n", " ")
            report.fail(operation.label, f"{who} {response.status_code}: {exc!s:.300} — {body}")

    call()


def test_no_operation_answers_5xx_or_an_undocumented_status(
    live_server: str, fuzz_runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.getLogger("duckline").setLevel(logging.CRITICAL)  # the fuzzer's nonsense is expected to be refused
    with fuzz_runtime.unit_of_work() as uow:
        demo.load(uow)
    app = create_app(runtime=fuzz_runtime)
    schema = schemathesis.openapi.from_dict(app.openapi())
    document = app.openapi()["paths"]
    report = Report()
    started = time.monotonic()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        headers = credentials(fuzz_runtime)
        for who in callers(document[operation.path][operation.method.lower()]):
            fuzz(operation, who, headers[who], live_server, report)
    elapsed = time.monotonic() - started
    summary = (
        f"fuzz: {operations} operations, {report.sent} requests in {elapsed:.0f} s"
        f" (seed {SEED}, {EXAMPLES} examples per operation, caller and mode),"
        f" {sum(n for s, n in report.statuses.items() if s >= 500)} answered 5xx,"
        f" {len(report.failures)} operations failing, {report.refused_credentials} 401s to a caller with a token;"
        f" statuses {dict(sorted(report.statuses.items()))}"
    )
    with capsys.disabled():
        print("\n" + summary)
        for label, problems in sorted(report.failures.items()):
            print(f"  {label}")
            for problem in problems:
                print(f"    {problem}")
    assert operations >= 60, "the document lost operations"
    assert report.sent >= operations * EXAMPLES, f"too few requests were really sent: {summary}"
    assert not report.failures, summary
    # Signed-in calls must get past sign-in, or the fuzz only ever tested the 401 path.
    assert report.refused_credentials <= report.sent // 100, summary
