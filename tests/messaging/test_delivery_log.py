"""What staff read of the delivery attempts: the latest tries, newest first and a page at a time,
filtered by kind (a message's channel, or its queue) and outcome; every try at one item; only for
the roles that may read them. Both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.core.clock import FrozenClock
from duckline.core.errors import DomainError, ErrorCode
from duckline.messaging import delivery_log, notifications
from duckline.messaging.delivery_log import Filters
from duckline.runtime import Runtime
from tests.factories import staff


class FlakySms:
    """An SMSC that refuses its first `failures` messages, then takes them."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def send(self, to: str, body: str, reference: str | None = None) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("throttled, try again")
        return "smsc-1"


@pytest.fixture
def quiet(runtime: Runtime) -> Runtime:
    runtime.settings.deliver_after_commit = False  # these tests drive delivery themselves
    return runtime


def queue(runtime: Runtime, channel: str, recipient: str) -> int:
    with runtime.unit_of_work() as uow:
        row = notifications.send_to(uow, channel, recipient, "otp", "en", code="480213", minutes=5)
        assert row is not None
        return row.id


@pytest.fixture
def tried(quiet: Runtime, clock: FrozenClock) -> dict[str, int]:
    """An SMS refused once then sent, an email sent, and an SMS claimed by a worker that died."""
    sms = queue(quiet, "sms", "+85261000001")
    email = queue(quiet, "email", "someone@example.com")
    channel = FlakySms(failures=1)
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 1  # the email; the SMS failed
    clock.advance(timedelta(seconds=31))
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 1  # the SMS, at its second try
    stuck = queue(quiet, "sms", "+85261000002")
    assert notifications.claim(quiet.db, clock, 10, notifications.DeliveryPolicy()) == [stuck]
    return {"sms": sms, "email": email, "stuck": stuck}


@pytest.fixture
def reader(quiet: Runtime) -> Account:
    return staff(quiet, Role.SUPPORT, 1)[0]


def shown(runtime: Runtime, viewer: Account, **filters: str) -> list[tuple[str, int, int, str | None]]:
    found = delivery_log.attempt_page(runtime.unit_of_work, viewer, Filters(**filters), None)
    return [(a.kind, a.subject_id, a.attempt, a.outcome) for a in found.attempts]


def test_the_latest_tries_come_first_with_their_kinds(quiet: Runtime, tried: dict[str, int], reader: Account) -> None:
    assert shown(quiet, reader) == [
        ("sms", tried["stuck"], 1, None),
        ("sms", tried["sms"], 2, "sent"),
        ("email", tried["email"], 1, "sent"),  # tried in the first round, with the SMS's first try
        ("sms", tried["sms"], 1, "error"),
    ]


def test_tries_are_filtered_by_kind_and_outcome(quiet: Runtime, tried: dict[str, int], reader: Account) -> None:
    assert [row[1] for row in shown(quiet, reader, kind="email")] == [tried["email"]]
    assert {row[1] for row in shown(quiet, reader, kind="sms")} == {tried["sms"], tried["stuck"]}
    assert shown(quiet, reader, kind="webhook") == []
    assert shown(quiet, reader, outcome="error") == [("sms", tried["sms"], 1, "error")]
    assert shown(quiet, reader, outcome="open") == [("sms", tried["stuck"], 1, None)]
    assert shown(quiet, reader, kind="sms", outcome="sent") == [("sms", tried["sms"], 2, "sent")]


def test_an_unknown_filter_is_refused_with_its_field(quiet: Runtime, reader: Account) -> None:
    for filters, field in ((Filters(kind="fax"), "kind"), (Filters(outcome="maybe"), "outcome")):
        with pytest.raises(DomainError) as refused:
            delivery_log.attempt_page(quiet.unit_of_work, reader, filters, None)
        assert (refused.value.error, refused.value.field) == (ErrorCode.VALIDATION_FAILED, field)


def test_pages_follow_one_another_without_a_gap(quiet: Runtime, tried: dict[str, int], reader: Account) -> None:
    seen, cursor = [], None
    while True:
        page = delivery_log.attempt_page(quiet.unit_of_work, reader, Filters(), cursor, limit=3)
        seen += [a.id for a in page.attempts]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 4 and seen == sorted(seen, reverse=True)


def test_an_items_tries_come_first_first_with_where_it_stands(
    quiet: Runtime, tried: dict[str, int], reader: Account
) -> None:
    item = delivery_log.item_attempts(quiet.unit_of_work, reader, "notification", tried["sms"])
    assert (item.kind, item.status) == ("sms", "sent")
    assert [(a.attempt, a.outcome) for a in item.attempts] == [(1, "error"), (2, "sent")]
    assert item.attempts[0].error is not None and "throttled" in item.attempts[0].error
    stuck = delivery_log.item_attempts(quiet.unit_of_work, reader, "notification", tried["stuck"])
    assert (stuck.status, [a.outcome for a in stuck.attempts]) == ("sending", [None])


def test_an_item_never_tried_is_not_found(quiet: Runtime, tried: dict[str, int], reader: Account) -> None:
    for subject, subject_id in (("notification", tried["stuck"] + 100), ("webhook", tried["sms"]), ("fax", 1)):
        with pytest.raises(DomainError) as missing:
            delivery_log.item_attempts(quiet.unit_of_work, reader, subject, subject_id)
        assert missing.value.error is ErrorCode.NOT_FOUND


def test_only_support_and_administrators_read_them(quiet: Runtime, tried: dict[str, int]) -> None:
    admin = staff(quiet, Role.ADMIN, 2)[0]
    assert len(shown(quiet, admin)) == 4
    for role, n in ((Role.FINANCE, 3), (Role.SUBSCRIBER, 4)):
        viewer = staff(quiet, role, n)[0]
        with pytest.raises(DomainError) as refused:
            delivery_log.attempt_page(quiet.unit_of_work, viewer, Filters(), None)
        assert refused.value.error is ErrorCode.FORBIDDEN
        with pytest.raises(DomainError):
            delivery_log.item_attempts(quiet.unit_of_work, viewer, "notification", tried["sms"])
