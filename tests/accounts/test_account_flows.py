"""The account, settings and support flows through a real unit of work: each holds its whole
choreography in one transaction (a refusal anywhere keeps nothing), and hands back rows that
need no session once it has committed."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from duckline.accounts import registration
from duckline.accounts import service as accounts
from duckline.accounts import settings as account_settings
from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.core.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.support import cases as tickets
from duckline.support import conversations as support
from duckline.support import desk as support_desk
from tests.factories import PASSWORD, PNG, hk_mobile, hkid, last_code, numbers, staff


def form(n: int) -> accounts.Registration:
    identity = accounts.IdentityInput("hkid", hkid(n), "CHAN Tai Man", None, date(1990, 1, 1))
    return accounts.Registration(hk_mobile(n), PASSWORD, identity, PNG)


def subscriber(runtime: Runtime, n: int) -> registration.Verified:
    phone = registration.start(runtime.unit_of_work, form(n))
    return registration.verify(runtime.unit_of_work, phone, last_code(runtime, phone))


def test_verifying_opens_the_first_line_or_keeps_nothing(runtime: Runtime) -> None:
    phone = registration.start(runtime.unit_of_work, form(1))
    code = last_code(runtime, phone)

    with pytest.raises(DomainError) as refused:  # the pool has no number yet
        registration.verify(runtime.unit_of_work, phone, code)
    assert refused.value.error is ErrorCode.NO_NUMBER_AVAILABLE
    with runtime.unit_of_work() as uow:  # the code was not used up, nor the account verified
        account = uow.session.scalars(select(Account).where(Account.phone == phone)).one()
        assert account.phone_verified_at is None

    [msisdn] = numbers(runtime, 1)
    done = registration.verify(runtime.unit_of_work, phone, code)
    # Rows the flow returns are read after its commit, as the routes read them.
    assert done.account.phone_verified_at is not None
    assert (done.line.account_id, done.line.msisdn) == (done.account.id, msisdn)
    assert done.esim.line_id == done.line.id


def test_settings_switch_the_viewers_own_lines_only(runtime: Runtime) -> None:
    numbers(runtime, 2)
    mine, theirs = subscriber(runtime, 1), subscriber(runtime, 2)
    support_staff, _ = staff(runtime, Role.SUPPORT)

    for viewer in (mine.account, support_staff):  # staff change others' lines in the console, not here
        with pytest.raises(DomainError) as refused:
            account_settings.set_line_features(runtime.unit_of_work, viewer, theirs.line.id, True, False)
        assert refused.value.error is ErrorCode.NOT_FOUND

    account_settings.set_line_features(runtime.unit_of_work, mine.account, mine.line.id, True, False)
    shown = account_settings.settings_of(runtime.unit_of_work, mine.account, None)
    assert [(row.line.id, row.line.voicemail, row.line.caller_id) for row in shown.lines] == [
        (mine.line.id, True, False)
    ]
    assert shown.pending == {"email": None, "phone": None} and shown.proof_until is None
    untouched = account_settings.settings_of(runtime.unit_of_work, theirs.account, None).lines[0].line
    assert (untouched.voicemail, untouched.caller_id) == (False, True)


def test_a_reply_refused_with_its_resolve_is_not_kept(runtime: Runtime) -> None:
    numbers(runtime, 1)
    owner = subscriber(runtime, 1).account
    ticket = support.start_ticket(runtime.unit_of_work, owner, "Roaming", "Does it work in Macau?", "line")

    with pytest.raises(DomainError) as refused:  # only staff resolve
        support.answer(runtime.unit_of_work, owner, ticket.id, "Never mind", resolve_it=True)
    assert refused.value.error is ErrorCode.FORBIDDEN
    assert support.thread(runtime.unit_of_work, owner, ticket.id).messages == []

    answered = support.answer(runtime.unit_of_work, owner, ticket.id, "Still there?")
    assert [m.body for m in answered.messages] == ["Still there?"]
    listed = support.ticket_list(runtime.unit_of_work, owner, None, 20)
    assert [t.id for t in listed.tickets] == [ticket.id]
    assert listed.latest[ticket.id].body == "Still there?"


def test_a_desk_action_returns_the_ticket_as_it_then_stands(runtime: Runtime) -> None:
    numbers(runtime, 1)
    owner = subscriber(runtime, 1).account
    desk, _ = staff(runtime, Role.SUPPORT)
    ticket = support.start_ticket(runtime.unit_of_work, owner, "Bill", "Charged twice?", "billing")

    shown = support_desk.reply_to(runtime.unit_of_work, desk, ticket.id, "Refunded the second one.")
    assert support_desk.desk_status(shown.ticket) == "waiting"
    assert [m.body for m in shown.messages] == ["Refunded the second one."]
    assert shown.people[owner.id].phone == owner.phone

    queue = support_desk.queue_page(runtime.unit_of_work, desk, support_desk.Filters(status="waiting"), None, 10)
    assert [t.id for t in queue.tickets] == [ticket.id] and owner.id in queue.people

    with runtime.unit_of_work() as uow:
        case_id = tickets.open_ticket(uow, "reconciliation", "Mismatch", "Amounts differ", None, None).id
    with pytest.raises(DomainError) as refused:
        support_desk.reply_to(runtime.unit_of_work, desk, case_id, "Hello?")
    assert refused.value.error is ErrorCode.TICKET_NOT_ANSWERABLE
    assert support_desk.shown(runtime.unit_of_work, case_id).messages == []
