"""One way to deliver what an outbox holds (messages to subscribers, integrators' webhooks, the
sandbox provider's webhooks): claim what is due under a short lease, send each outside any
transaction, record its outcome (delivered, retried with back-off, or given up) at once, and keep
one `delivery_attempts` row per try.

A queue's table has the columns `id`, `status`, `attempts`, `lease_until`, `claim`, `last_error`
and a column saying when a waiting row is (next) due. Rows wait in the queue's waiting status; a
claimed row is `sending` under its worker round's token until its outcome is recorded, or until
its lease runs out and another round takes it back (its worker died).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

from sqlalchemy import CursorResult, String, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from duckline.core.clock import Clock
from duckline.db.engine import Database
from duckline.db.types import UTCDateTime
from duckline.messaging.models import DeliveryAttempt

log = logging.getLogger(__name__)
SENDING, FAILED, EXPIRED = "sending", "failed", "expired"
Transaction = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True)
class Store:
    """Where a queue lives: its transactions and its clock."""

    transaction: Transaction
    now: Callable[[], datetime]
    # For an outcome whose loss costs only a repeat of its message (see Database.transaction).
    quick_transaction: Transaction | None = None

    @classmethod
    def of(cls, db: Database, clock: Clock) -> Store:
        return cls(db.transaction, clock.now, lambda: db.transaction(wait_for_disk=False))


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 6
    base_delay: timedelta = timedelta(seconds=30)  # then twice as long after each failure …
    max_delay: timedelta | None = None  # … up to this
    # How long a claim holds without news from its worker, which renews it while it makes progress.
    lease: timedelta = timedelta(seconds=30)

    def retry_at(self, now: datetime, attempts: int) -> datetime:
        delay = self.base_delay * (2 ** (attempts - 1))
        return now + (min(delay, self.max_delay) if self.max_delay is not None else delay)


@dataclass(frozen=True)
class Outcome:
    kind: Literal["sent", "refused", "error", "expired"]  # refused: for good; error: worth retrying
    error: str | None = None  # never a secret: the caller strikes one-time codes out
    status_code: int | None = None
    values: Mapping[str, Any] = field(default_factory=dict)  # more columns to set with it


class Item(Protocol):
    """What one claimed row carries to its sender: plain data, read in the batch's transaction."""

    @property
    def id(self) -> int: ...

    @property
    def attempts(self) -> int: ...


T = TypeVar("T", bound=Item)


def _as_is(item: Any, outcome: Outcome, values: dict[str, Any]) -> dict[str, Any]:
    return values


@dataclass(frozen=True)
class Queue(Generic[T]):
    subject: str  # as delivery_attempts names it: notification, webhook, sandbox_webhook
    table: Any  # the mapped class
    due_at: Any  # its column saying when a waiting row is due
    waiting: str  # the status of a row waiting for its (next) try
    sent: str  # its status once delivered
    order_by: Sequence[Any]
    policy: Policy
    load: Callable[[Session, list[int]], list[T]]  # the claimed rows as items, in claim order
    # The last word on the values recorded with an outcome (e.g. strike a one-time code).
    settle: Callable[[T, Outcome, dict[str, Any]], dict[str, Any]] = _as_is


@dataclass(frozen=True)
class Tally:
    tried: int = 0
    sent: int = 0


def deliver(store: Store, queue: Queue[T], send: Callable[[T], Outcome], limit: int = 100) -> Tally:
    """Send what is due; safe to run in several workers at once.

    One transaction claims a batch; each item is sent outside any transaction and its outcome
    recorded at once in a short transaction of its own, so a worker that dies loses at most the
    outcome of the item it was sending: that one goes again, the rest of its batch as soon as its
    short lease runs out. The lease is renewed as long as the batch makes progress.
    """
    token = uuid.uuid4().hex
    claimed = claim(store, queue, limit, token)
    if not claimed:
        return Tally()
    with store.transaction() as session:
        batch = queue.load(session, claimed)
    held, renewed_at, tried, sent = set(claimed), store.now(), 0, 0
    for item in batch:
        if store.now() - renewed_at >= queue.policy.lease / 2:
            held, renewed_at = _renew(store, queue, token), store.now()
        if item.id not in held:
            continue  # our lease ran out and another worker has taken it
        started = store.now()
        try:
            outcome = send(item)
        except Exception as exc:  # a sender's own failure: this try failed, the batch goes on
            log.exception("%s %s: try %s failed", queue.subject, item.id, item.attempts)
            outcome = Outcome("error", repr(exc)[:500])
        tried += 1
        if _record(store, queue, token, item, outcome, started) and outcome.kind == "sent":
            sent += 1
    return Tally(tried, sent)


def claim(store: Store, queue: Queue[Any], limit: int, token: str | None = None) -> list[int]:
    """Take up to `limit` due rows under `token`, and open an attempt row for each. SKIP LOCKED
    lets two workers claim different rows at once (SQLite serialises writers instead); a claim
    whose worker died is taken back when its lease runs out."""
    now, table, token = store.now(), queue.table, token or uuid.uuid4().hex
    with store.transaction() as session:
        ids = list(
            session.scalars(
                select(table.id)
                .where(
                    or_(
                        (table.status == queue.waiting) & (queue.due_at <= now),
                        (table.status == SENDING) & (table.lease_until < now),
                    )
                )
                .order_by(*queue.order_by)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
        )
        if ids:
            session.execute(
                update(table)
                .where(table.id.in_(ids))
                .values(status=SENDING, claim=token, lease_until=now + queue.policy.lease, attempts=table.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            tries = select(
                literal(queue.subject, String()),
                table.id,
                table.attempts,
                literal(token, String()),
                literal(now, UTCDateTime()),
            ).where(table.id.in_(ids))
            columns = ["subject", "subject_id", "attempt", "claim", "started_at"]
            session.execute(insert(DeliveryAttempt).from_select(columns, tries))
    return ids


def _record(store: Store, queue: Queue[T], token: str, item: T, outcome: Outcome, started: datetime) -> bool:
    """Write one item's outcome, unless our claim on it was taken back meanwhile (then the worker
    holding it now decides); the try's attempt row gets it either way. A claimed row changes only
    under its claim, so what the batch read of it still holds."""
    now, table, policy = store.now(), queue.table, queue.policy
    values: dict[str, Any] = {"lease_until": None, "claim": None, "last_error": outcome.error, **outcome.values}
    if outcome.kind == "sent":
        values["status"] = queue.sent
    elif outcome.kind == "error" and item.attempts < policy.max_attempts:
        values |= {"status": queue.waiting, queue.due_at.key: policy.retry_at(now, item.attempts)}
    else:
        values["status"] = EXPIRED if outcome.kind == "expired" else FAILED
    values = queue.settle(item, outcome, values)
    with (store.quick_transaction or store.transaction)() as session:
        result = cast(
            CursorResult[Any],
            session.execute(
                update(table)
                .where(table.id == item.id, table.claim == token, table.status == SENDING)
                .values(**values)
                .execution_options(synchronize_session=False)
            ),
        )
        session.execute(
            update(DeliveryAttempt)
            .where(
                DeliveryAttempt.subject == queue.subject,
                DeliveryAttempt.subject_id == item.id,
                DeliveryAttempt.claim == token,
            )
            .values(
                started_at=started,
                finished_at=now,
                outcome=outcome.kind,
                error=outcome.error and outcome.error[:500],
                status_code=outcome.status_code,
            )
            .execution_options(synchronize_session=False)
        )
    return result.rowcount == 1


def _renew(store: Store, queue: Queue[Any], token: str) -> set[int]:
    """Extend our lease on what we still hold, and say which rows those are."""
    table = queue.table
    with store.transaction() as session:
        return set(
            session.scalars(
                update(table)
                .where(table.claim == token, table.status == SENDING)
                .values(lease_until=store.now() + queue.policy.lease)
                .returning(table.id)
                .execution_options(synchronize_session=False)
            )
        )


@dataclass(frozen=True)
class AttemptView:
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None  # None: in flight, or its worker died
    error: str | None
    status_code: int | None


def attempts(session: Session, subject: str, subject_id: int) -> list[AttemptView]:
    """Every try at one row, first first."""
    rows = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.subject == subject, DeliveryAttempt.subject_id == subject_id)
        .order_by(DeliveryAttempt.id)
    )
    return [AttemptView(r.attempt, r.started_at, r.finished_at, r.outcome, r.error, r.status_code) for r in rows]
