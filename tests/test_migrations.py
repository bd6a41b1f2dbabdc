"""One migration history for both databases, matching the models; the app refuses to run behind it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from duckline.accounts.models import Account, Guardian, Person
from duckline.core.config import Settings
from duckline.db.engine import make_engine
from duckline.db.migrate import NotMigrated, current_revision, ensure_migrated, head_revision, upgrade
from duckline.db.models import Base
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
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no tables yet, to migrate step by step."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'steps.db'}")
        yield engine
        engine.dispose()
        return
    if PG_SKIP_REASON:
        pytest.skip(PG_SKIP_REASON)
    server = make_url(PG_SERVER)
    name = f"duckline_steps_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.set(database=name).render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_adults_named_as_guardians_leave_the_persons_table(empty_database: Engine) -> None:
    """Before 0011 an adult a minor named was stored as a person, which took the identity place
    of their own registration. The migration moves them to guardians, and frees the place of those
    who never registered themselves (whoever has an account of their own keeps their person)."""
    upgrade(empty_database, "0008")
    now = datetime(2026, 11, 30, tzinfo=UTC)

    def person(id: int, key: str, name: str, born: date, lines: int, guardian: int | None = None) -> dict[str, Any]:
        return {
            "id": id,
            "document_type": "hkid",
            "document_hash": key,
            "document_cipher": b"sealed",
            "document_masked": f"{key[0].upper()}{id}******",
            "name_en": name,
            "name_zh": None,
            "birth_date": born,
            "guardian_id": guardian,
            "kyc_status": "verified",
            "kyc_reason": None,
            "line_count": lines,
            "created_at": now,
        }

    with empty_database.begin() as db:
        db.execute(
            insert(Person.__table__),
            [
                person(1, "named-only", "CHAN", date(1980, 1, 1), 0),
                person(2, "subscriber", "WONG", date(1982, 2, 2), 1),
                person(3, "child-1", "CHAN JR", date(2015, 3, 3), 1, guardian=1),
                person(4, "child-2", "WONG JR", date(2016, 4, 4), 1, guardian=2),
                person(5, "child-3", "CHAN III", date(2017, 5, 5), 0, guardian=1),
            ],
        )
        db.execute(
            insert(Account.__table__),
            [
                {
                    "id": 10 + p,
                    "phone": f"+8526100000{p}",
                    "password_hash": "x",
                    "role": "subscriber",
                    "language": "en",
                    "timezone": "Asia/Hong_Kong",
                    "person_id": p,
                    "preferences": {},
                    "created_at": now,
                }
                for p in (2, 3, 4, 5)
            ],
        )

    upgrade(empty_database)

    with Session(empty_database) as session:
        left = {p.id: p for p in session.scalars(select(Person))}
        assert sorted(left) == [2, 3, 4, 5]  # the adult who never registered is no longer a person
        named = {p.name_en: session.get(Guardian, p.guardian_id) for p in left.values() if p.guardian_id}
        assert {k: (g.document_hash, g.name_en, g.birth_date) for k, g in named.items() if g} == {
            "CHAN JR": ("named-only", "CHAN", date(1980, 1, 1)),
            "CHAN III": ("named-only", "CHAN", date(1980, 1, 1)),
            "WONG JR": ("subscriber", "WONG", date(1982, 2, 2)),
        }
        assert {g.document_cipher for g in named.values() if g} == {b"sealed"}
        assert left[2].line_count == 1  # the subscriber's own identity and lines are untouched
    ensure_migrated(empty_database)


def test_messages_stored_before_0009_get_references_and_lose_settled_codes(empty_database: Engine) -> None:
    engine = empty_database
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
    assert [r.reference for r in rows] == ["dl-1", "dl-2", "dl-3", "dl-4"]
    sent, failed, queued, other = rows
    assert "314159" not in sent.body and "••••••" in sent.body
    assert "314159" not in failed.body + failed.html
    assert (queued.one_time_code, queued.priority) == ("271828", 0) and "271828" in queued.body  # still to go
    assert other.body.endswith("(ticket 123456).") and other.priority == 1  # not a code


def test_sandbox_webhooks_stored_before_0014a_join_the_shared_delivery_in_their_state(empty_database: Engine) -> None:
    """Answered ones are delivered, lost ones stay lost, the rest are due as they were."""
    upgrade(empty_database, "0013b")
    now = datetime(2026, 12, 7, tzinfo=UTC)
    with empty_database.begin() as db:
        for id, deliveries, lost in ((1, 2, False), (2, 0, True), (3, 0, False)):
            db.execute(
                text(
                    "INSERT INTO sandbox_webhooks (id, event_id, payload, deliveries, deliver_after, lost, created_at)"
                    " VALUES (:id, :event, '{}', :deliveries, :at, :lost, :at)"
                ),
                {"id": id, "event": f"evt_{id}", "deliveries": deliveries, "at": now, "lost": lost},
            )
    upgrade(empty_database)
    with empty_database.connect() as db:
        rows = db.execute(text("SELECT id, status, attempts, claim FROM sandbox_webhooks ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "delivered", 0, None), (2, "lost", 0, None), (3, "pending", 0, None)]
        assert db.execute(text("SELECT count(*) FROM delivery_attempts")).scalar() == 0
