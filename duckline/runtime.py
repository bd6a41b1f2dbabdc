"""The composition root: builds the engine, keys, channels and limits once, at start-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from duckline.adapters.db.engine import Database, make_engine
from duckline.adapters.db.migrate import ensure_migrated
from duckline.adapters.protection import DataProtector, Passwords, SecretHasher
from duckline.adapters.sms import SmsChannel
from duckline.adapters.sms.log import LogSmsChannel
from duckline.clock import Clock, SystemClock
from duckline.config import Settings
from duckline.services.notifications import deliver_queued
from duckline.services.unit_of_work import UnitOfWork


class RateLimits:
    """Moving-window limits on login and OTP, keyed by phone and by client address."""

    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._rules = {"login": parse(settings.login_rate_limit), "otp": parse(settings.otp_rate_limit)}

    def hit(self, rule: str, *keys: str) -> bool:
        """Count one attempt against every key; False if any of them is over its limit."""
        return all([self._limiter.hit(self._rules[rule], rule, key) for key in keys])


class Runtime:
    def __init__(self, settings: Settings, clock: Clock | None = None, sms: SmsChannel | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.db = Database(make_engine(settings.database_url))
        self.protector = DataProtector(settings.data_key)
        self.secrets = SecretHasher(settings.secret_key)
        self.passwords = Passwords()
        self.sms = sms or LogSmsChannel(settings.log_dir / "sms-outbox.log")
        self.rate_limits = RateLimits(settings)

    def check_schema(self) -> None:
        ensure_migrated(self.db.engine)

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """One transaction; queued messages leave only after it has committed."""
        with self.db.transaction() as session:
            uow = UnitOfWork(session, self.settings, self.clock, self.protector, self.secrets, self.passwords)
            yield uow
        if uow.queued_notifications:
            deliver_queued(self.db, self.sms, self.clock)

    def close(self) -> None:
        self.db.dispose()
