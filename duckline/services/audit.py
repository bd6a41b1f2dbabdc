"""The audit log: who did what to what, written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from duckline.adapters.db.tables import AuditEntry
from duckline.services.unit_of_work import UnitOfWork


def record(uow: UnitOfWork, actor_id: int | None, action: str, target: str, **detail: Any) -> None:
    uow.session.add(AuditEntry(actor_id=actor_id, action=action, target=target, detail=detail, at=uow.now()))
