"""What a use case may touch: the session of one transaction, the clock, settings and keys."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from duckline.core.clock import Clock
from duckline.core.config import Settings
from duckline.core.protection import DataProtector, Passwords, SecretHasher


@dataclass
class UnitOfWork:
    session: Session
    settings: Settings
    clock: Clock
    protector: DataProtector
    secrets: SecretHasher
    passwords: Passwords
    # Set when a notification was queued, so the runtime delivers it after commit.
    queued_notifications: int = field(default=0)

    def now(self) -> datetime:
        return self.clock.now()

    def today_local(self) -> date:
        return self.now().astimezone(ZoneInfo(self.settings.display_timezone)).date()


# The one unit-of-work factory: each call opens one transaction (the runtime's `unit_of_work`).
Transactions = Callable[[], AbstractContextManager[UnitOfWork]]
