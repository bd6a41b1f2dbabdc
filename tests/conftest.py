"""Test fixtures: every test that needs a database runs on SQLite and on PostgreSQL.

PostgreSQL tests get their own database per session, built by the migrations (so the
migrations are tested too), emptied between tests. The PostgreSQL half is skipped, with the
reason printed, only when no server answers.

What costs time is built once per worker: the migrated databases, and the app (tests/app_pool.py);
each test gets its own Runtime, clock and database contents.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url

from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.db.engine import make_engine
from duckline.db.migrate import upgrade
from duckline.db.models import Base
from duckline.runtime import Runtime
from tests.app_pool import pooled_app

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests against a real server (the browser's, the fuzzer's) take 5-70 s each: they go first,
    so that under pytest-xdist none of them starts last while the other workers have run out."""
    items.sort(key=lambda item: not {"live", "live_server"} & set(getattr(item, "fixturenames", ())))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if PG_SKIP_REASON:
        pytest.skip(PG_SKIP_REASON)
    server = make_url(PG_SERVER)
    name = f"duckline_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
        # Waiting for the disk at each commit (4-5 ms here) is durability, which no test checks;
        # locks, isolation and visibility are the same.
        connection.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    admin.dispose()
    yield url
    drop_in_background(server, name)


def drop_in_background(server: URL, name: str) -> None:
    """DROP DATABASE makes the server checkpoint (6-12 s on a busy machine, at the very end of
    each worker): a process of its own drops the database while pytest exits."""
    script = "import sys, psycopg; psycopg.connect(sys.argv[1], autocommit=True).execute(sys.argv[2]).close()"
    libpq = server.set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.Popen(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", script, libpq, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


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
    cleaner: Engine = request.getfixturevalue("postgres_cleaner")
    yield url
    with cleaner.begin() as connection:
        connection.execute(EMPTY_EVERY_TABLE)


# What TRUNCATE ... RESTART IDENTITY did, at a fraction of its cost (TRUNCATE replaces the files
# of all 40 tables and their indexes, about 0.3 s; a test writes a few rows in a few of them):
# DELETE every table, children first, and restart the sequences that were used.
_DELETES = "".join(f'DELETE FROM "{t.name}"; ' for t in reversed(Base.metadata.sorted_tables))  # noqa: S608
_RESTART_USED_SEQUENCES = (
    "FOR used IN SELECT schemaname, sequencename FROM pg_sequences WHERE last_value IS NOT NULL LOOP"
    " PERFORM setval(format('%I.%I', used.schemaname, used.sequencename), 1, false); END LOOP;"
)
EMPTY_EVERY_TABLE = text(f"DO $$ DECLARE used record; BEGIN {_DELETES}{_RESTART_USED_SEQUENCES} END $$")


@pytest.fixture(scope="session")
def postgres_cleaner(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@functools.cache
def _test_settings() -> Settings:
    """Built once per process: reading the environment and .env for 120 fields (pydantic-settings)
    costs 20-50 ms, on each of some 1,200 tests. Each test gets a copy with its own database and
    log directory (no field's validation depends on either)."""
    return Settings(
        environment="test",
        database_url="sqlite://",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
        data_key="test-data-key-that-is-long-enough-0123456789",
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
def settings(database_url: str, tmp_path: Path) -> Settings:
    return _test_settings().model_copy(update={"database_url": database_url, "log_dir": tmp_path / "var"}, deep=True)


@pytest.fixture
def runtime(settings: Settings, clock: FrozenClock) -> Iterator[Runtime]:
    runtime = Runtime(settings, clock=clock)
    yield runtime
    runtime.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client
