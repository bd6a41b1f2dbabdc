"""One migration history for both databases, matching the models; the app refuses to run behind it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from duckline.adapters.db.engine import make_engine
from duckline.adapters.db.migrate import NotMigrated, current_revision, ensure_migrated, head_revision, upgrade
from duckline.adapters.db.tables import Base
from duckline.config import Settings
from duckline.runtime import Runtime
from duckline.web.app import create_app
from tests.conftest import PG_SERVER, PG_SKIP_REASON


def test_migrated_schema_matches_the_models(runtime: Runtime) -> None:
    """Whatever `alembic upgrade head` built (both databases) is exactly what the models say."""
    with runtime.db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert current_revision(runtime.db.engine) == head_revision(runtime.db.engine)


def test_empty_database_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    runtime = Runtime(Settings(database_url=url, log_dir=tmp_path))
    with pytest.raises(NotMigrated, match="duckline db upgrade"), TestClient(create_app(runtime=runtime)):
        pass
    runtime.close()


def test_upgrade_is_repeatable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'twice.db'}")
    upgrade(engine)
    upgrade(engine)
    ensure_migrated(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    if PG_SKIP_REASON:
        pytest.skip(PG_SKIP_REASON)
    server = make_url(PG_SERVER)
    name = f"duckline_migrate_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_messages_stored_before_0009_get_references_and_lose_settled_codes(empty_database: str) -> None:
    engine = make_engine(empty_database)
    upgrade(engine, "0008")
    insert = text(
        "INSERT INTO notifications (channel, recipient, template, language, body, html, status, attempts,"
        " next_attempt_at, created_at) VALUES (:channel, :recipient, :template, 'en', :body, :html, :status, 0,"
        " :at, :at)"
    )
    at = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    code_text = "Your Duckline verification code is 314159. It expires in 5 minutes."
    with engine.begin() as connection:
        for template, channel, status, body in [
            ("otp", "sms", "sent", code_text),
            ("email_verify", "email", "failed", code_text),
            ("otp", "sms", "queued", code_text.replace("314159", "271828")),
            ("line_recycled", "sms", "sent", "5170 0000 has been recycled (ticket 123456)."),
        ]:
            html = f"<p>{body}</p>" if channel == "email" else None
            values = {"channel": channel, "recipient": "x", "template": template, "body": body, "html": html}
            connection.execute(insert, {**values, "status": status, "at": at})
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT reference, body, html, one_time_code, priority FROM notifications ORDER BY id")
        ).all()
    engine.dispose()
    assert [r.reference for r in rows] == ["dl-1", "dl-2", "dl-3", "dl-4"]
    sent, failed, queued, other = rows
    assert "314159" not in sent.body and "••••••" in sent.body
    assert "314159" not in failed.body + failed.html
    assert (queued.one_time_code, queued.priority) == ("271828", 0) and "271828" in queued.body  # still to go
    assert other.body.endswith("(ticket 123456).") and other.priority == 1  # not a code
