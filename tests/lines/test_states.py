"""The line lifecycle state machine (duckline.lines.states)."""

from __future__ import annotations

from itertools import product

import pytest

from duckline.core.errors import DomainError, ErrorCode, Kind
from duckline.lines.states import LineStatus, can_transition, can_use_service, check_transition

S = LineStatus

# The lifecycle as specified, written out independently of the module's table.
ALLOWED = {
    (S.PENDING, S.ACTIVE),  # first plan bought / identity verified
    (S.PENDING, S.RECYCLED),  # abandoned before activation
    (S.ACTIVE, S.GRACE),  # passed expiry
    (S.ACTIVE, S.SUSPENDED),  # stopped by staff
    (S.GRACE, S.ACTIVE),  # renewed in grace
    (S.GRACE, S.EXPIRED),  # grace over
    (S.GRACE, S.SUSPENDED),
    (S.SUSPENDED, S.ACTIVE),  # restored
    (S.SUSPENDED, S.EXPIRED),
    (S.EXPIRED, S.ACTIVE),  # renewed during retention
    (S.EXPIRED, S.RECYCLED),  # number returned to the pool
}
ALL_PAIRS = list(product(LineStatus, repeat=2))
DISALLOWED = [pair for pair in ALL_PAIRS if pair not in ALLOWED]


def test_every_status_is_covered() -> None:
    assert len(ALL_PAIRS) == 36
    assert len(DISALLOWED) == 36 - len(ALLOWED)


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transitions_pass(current: LineStatus, target: LineStatus) -> None:
    assert can_transition(current, target)
    check_transition(current, target)  # does not raise


@pytest.mark.parametrize(("current", "target"), DISALLOWED)
def test_disallowed_transitions_raise(current: LineStatus, target: LineStatus) -> None:
    assert not can_transition(current, target)
    with pytest.raises(DomainError) as info:
        check_transition(current, target)
    assert info.value.error is ErrorCode.LINE_TRANSITION_NOT_ALLOWED
    assert info.value.error.kind is Kind.CONFLICT
    assert info.value.field == "status"
    assert info.value.params == {"current": current.value, "target": target.value}
    assert str(info.value) == f"A line cannot go from {current.value} to {target.value}."


@pytest.mark.parametrize("status", list(LineStatus))
def test_no_status_transitions_to_itself(status: LineStatus) -> None:
    assert not can_transition(status, status)


@pytest.mark.parametrize("target", list(LineStatus))
def test_recycled_is_terminal(target: LineStatus) -> None:
    assert not can_transition(S.RECYCLED, target)


@pytest.mark.parametrize("current", [S.ACTIVE, S.GRACE, S.SUSPENDED])
def test_a_live_number_cannot_be_recycled_directly(current: LineStatus) -> None:
    assert not can_transition(current, S.RECYCLED)


@pytest.mark.parametrize("status", list(LineStatus))
def test_only_active_lines_can_use_service(status: LineStatus) -> None:
    assert can_use_service(status) is (status is S.ACTIVE)
