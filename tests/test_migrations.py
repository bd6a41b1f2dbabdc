"""One migration history for both databases, matching the models; the app refuses to run behind it."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient

from duckline.adapters.db.engine import make_engine
from duckline.adapters.db.migrate import NotMigrated, current_revision, ensure_migrated, head_revision, upgrade
from duckline.adapters.db.tables import Base
from duckline.config import Settings
from duckline.runtime import Runtime
from duckline.web.app import create_app


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
