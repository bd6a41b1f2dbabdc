"""Test fixtures: every test that needs a database runs on SQLite and on PostgreSQL.

PostgreSQL tests get their own database per session, built by the migrations (so the
migrations are tested too), emptied between tests. The PostgreSQL half is skipped, with the
reason printed, only when no server answers.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.db.engine import make_engine
from duckline.db.migrate import upgrade
from duckline.db.models import Base
from duckline.runtime import Runtime
from duckline.web.app import create_app

# The CLI's rich console sizes itself from COLUMNS when it is built; test workers (pytest-xdist)
# have no terminal, and a narrow default would wrap the values the CLI tests look for.
os.environ.setdefault("COLUMNS", "200")

PG_SERVER = os.environ.get("DUCKLINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
START = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Hong Kong


def _pg_unavailable() -> str | None:
    url = make_url(PG_SERVER)
    try:
        with psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=3,
        ):
            return None
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {url.render_as_string(hide_password=True)}: {exc}".strip()


PG_SKIP_REASON = _pg_unavailable()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if PG_SKIP_REASON:
        pytest.skip(PG_SKIP_REASON)
    server = make_url(PG_SERVER)
    name = f"duckline_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "duckline.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    if request.param == "sqlite":
        if request.node.get_closest_marker("postgres_only"):
            pytest.skip("needs PostgreSQL's row locks and real parallel writers")
        path = tmp_path / "duckline.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        secret_key="test-secret-key-that-is-long-enough-0123456789",
        data_key="test-data-key-that-is-long-enough-0123456789",
        log_dir=tmp_path / "var",
        login_rate_limit="1000/minute",
        otp_rate_limit="1000/minute",
        otp_max_sends_per_hour=100,
        otp_max_sends_per_day=100,
        otp_address_rate_limit="1000/hour",
        password_time_cost=1,  # argon2id still, at a cost that keeps the suite quick
        password_memory_kib=1024,
        deliver_after_commit=True,  # tests read codes from the SMS log right after the request
    )


@pytest.fixture
def runtime(settings: Settings, clock: FrozenClock) -> Iterator[Runtime]:
    runtime = Runtime(settings, clock=clock)
    yield runtime
    runtime.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime), base_url="http://127.0.0.1") as test_client:
        yield test_client
