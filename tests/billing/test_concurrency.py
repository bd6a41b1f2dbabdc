"""Races that must not double-allocate, double-count or double-charge — with real parallel
transactions (threads, each with its own connection) against the real database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import TypeVar

from sqlalchemy import func, select

from duckline.accounts import otp
from duckline.accounts import service as accounts
from duckline.accounts.models import Account, Person
from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.catalog.rules import Unit, Zone
from duckline.core.clock import FrozenClock
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines import service as lines
from duckline.lines.models import Line, PoolNumber
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from duckline.usage import ingest as usage
from duckline.usage.models import Bucket, LedgerEntry, UsageRecord
from tests.factories import PASSWORD, PNG, hk_mobile, hkid, last_code, numbers, plan_input

T = TypeVar("T")


def in_parallel(count: int, work: Callable[[int], T]) -> list[T | DomainError]:
    """Run work(0..count-1) on `count` threads released at the same instant."""
    start = threading.Barrier(count)

    def run(i: int) -> T | DomainError:
        start.wait()
        try:
            return work(i)
        except DomainError as error:
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def registration(n: int, document_number: str | None = None) -> accounts.Registration:
    identity = accounts.IdentityInput("hkid", document_number or hkid(n), "CHAN Tai Man", None, date(1990, 1, 1))
    return accounts.Registration(hk_mobile(n), PASSWORD, identity, PNG)


def registered(uow: UnitOfWork, form: accounts.Registration) -> Account:
    phone = accounts.register(uow, form)
    return uow.session.scalars(select(Account).where(Account.phone == phone)).one()


def verified_account(runtime: Runtime, n: int) -> int:
    with runtime.unit_of_work() as uow:
        account = registered(uow, registration(n))
        account.phone_verified_at = uow.now()
        otp.expire_all(uow, account.phone)
        return account.id


def test_50_parallel_registrations_get_50_distinct_numbers(runtime: Runtime) -> None:
    pool = set(numbers(runtime, 50))
    account_ids = [verified_account(runtime, n) for n in range(50)]

    def open_first_line(i: int) -> str:
        with runtime.unit_of_work() as uow:
            account = uow.session.get(Account, account_ids[i])
            assert account is not None
            return lines.open_line(uow, account).msisdn

    results = in_parallel(50, open_first_line)
    errors = [r for r in results if isinstance(r, DomainError)]
    assert errors == []
    assert set(results) == pool  # 50 distinct numbers, all from the pool
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).where(PoolNumber.available.is_(True))) == 0
        assert uow.session.scalar(select(func.count(func.distinct(Line.msisdn)))) == 50
        extra = registered(uow, registration(99))
        extra.phone_verified_at = uow.now()
    with runtime.unit_of_work() as uow:
        late = uow.session.scalars(select(Account).where(Account.phone == hk_mobile(99))).one()
        try:
            lines.open_line(uow, late)
            raise AssertionError("a 51st line was opened from a pool of 50")
        except DomainError as error:
            assert error.error is ErrorCode.NO_NUMBER_AVAILABLE


def test_parallel_registrations_and_verifications_end_to_end(runtime: Runtime) -> None:
    """The whole sign-up (register, verify the code, open the line) by 20 people at once."""
    numbers(runtime, 20)

    def sign_up(i: int) -> str:
        with runtime.unit_of_work() as uow:
            accounts.register(uow, registration(200 + i))
        code = last_code(runtime, hk_mobile(200 + i))
        with runtime.unit_of_work() as uow:
            account = accounts.verify_phone(uow, hk_mobile(200 + i), code)
            return lines.open_line(uow, account).msisdn

    results = in_parallel(20, sign_up)
    assert all(isinstance(r, str) for r in results), results
    assert len(set(results)) == 20


def test_line_limit_holds_under_parallel_requests(runtime: Runtime) -> None:
    limit = runtime.settings.max_lines_per_identity
    numbers(runtime, limit + 10)
    account_id = verified_account(runtime, 1)

    def open_line(_: int) -> str:
        with runtime.unit_of_work() as uow:
            account = uow.session.get(Account, account_id)
            assert account is not None
            return lines.open_line(uow, account).msisdn

    results = in_parallel(limit + 5, open_line)
    opened = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(opened) == limit
    assert {e.error for e in refused} == {ErrorCode.LINE_LIMIT_REACHED}
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(Person.line_count)) == limit
        assert uow.session.scalar(select(func.count()).select_from(Line)) == limit
        # The numbers of the refused attempts went back to the pool with their rollback.
        assert uow.session.scalar(select(func.count()).where(PoolNumber.available.is_(False))) == limit


def test_same_identity_registering_in_parallel_succeeds_once(runtime: Runtime) -> None:
    """One account is made; the others get the same answer (nobody learns the identity is taken)
    and its owner is told, once."""

    def register(i: int) -> str:
        with runtime.unit_of_work() as uow:
            return accounts.register(uow, registration(300 + i, document_number=hkid(777)))

    results = in_parallel(6, register)
    assert results == [hk_mobile(300 + i) for i in range(6)]
    with runtime.unit_of_work() as uow:
        (winner,) = uow.session.scalars(select(Account)).all()
        told = uow.session.scalars(
            select(Notification.recipient).where(Notification.template == "registration_attempt_identity")
        ).all()
        assert told == [winner.phone]


def active_line(runtime: Runtime, clock: FrozenClock) -> Line:
    numbers(runtime, 1)
    account_id = verified_account(runtime, 1)
    with runtime.unit_of_work() as uow:
        admin = accounts.create_staff(uow, "+85251000001", PASSWORD, Role.ADMIN)
        plan = catalog.create_plan(uow, admin, plan_input())
        account = uow.session.get(Account, account_id)
        assert account is not None
        return lines.activate(uow, admin, lines.open_line(uow, account), plan)


def sms_batch(line: Line, prefix: str, count: int, clock: FrozenClock) -> list[usage.UsageInput]:
    at = clock.now() + timedelta(minutes=5)
    return [usage.UsageInput(f"{prefix}-{i}", line.msisdn, usage.UsageKind.SMS, Zone.HK, 1, at) for i in range(count)]


def sms_remaining(runtime: Runtime, line: Line) -> int:
    with runtime.unit_of_work() as uow:
        return int(
            uow.session.scalar(
                select(func.sum(Bucket.remaining)).where(Bucket.line_id == line.id, Bucket.unit == Unit.SMS)
            )
            or 0
        )


def test_a_batch_delivered_four_times_at_once_is_charged_once(runtime: Runtime, clock: FrozenClock) -> None:
    line = active_line(runtime, clock)
    batch = sms_batch(line, "dup", 30, clock)

    def deliver(_: int) -> int:
        with runtime.unit_of_work() as uow:
            return usage.ingest(uow, "smsc-1", batch).count("applied")

    applied = in_parallel(4, deliver)
    assert sorted(a for a in applied if isinstance(a, int)) == [0, 0, 0, 30]
    assert sms_remaining(runtime, line) == 100 - 30
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(UsageRecord)) == 30


def test_different_batches_for_one_line_in_parallel_lose_nothing(runtime: Runtime, clock: FrozenClock) -> None:
    line = active_line(runtime, clock)

    def deliver(i: int) -> int:
        with runtime.unit_of_work() as uow:
            return usage.ingest(uow, "smsc-1", sms_batch(line, f"b{i}", 30, clock)).count("applied")

    assert in_parallel(5, deliver) == [30] * 5  # 150 SMS against 100: 50 are overage, none lost
    assert sms_remaining(runtime, line) == 0
    with runtime.unit_of_work() as uow:
        usage_total = uow.session.scalar(
            select(func.sum(LedgerEntry.delta)).where(LedgerEntry.reason.in_(("usage", "overage")))
        )
        overage = uow.session.scalar(select(func.sum(LedgerEntry.delta)).where(LedgerEntry.reason == "overage"))
    assert (usage_total, overage) == (-150, -50)
