"""Who sees whose records: the rule every "visible_*" lookup applies."""

from __future__ import annotations

import pytest

from duckline.accounts.roles import STAFF, Role, may_see


def test_a_subscriber_sees_only_their_own() -> None:
    assert may_see(Role.SUBSCRIBER, 7, 7)
    assert not may_see(Role.SUBSCRIBER, 7, 8)
    assert not may_see(Role.SUBSCRIBER, 7, None)  # a record of nobody's is nobody's to see


@pytest.mark.parametrize("role", sorted(STAFF))
def test_staff_see_everyones(role: Role) -> None:
    assert may_see(role, 1, 2) and may_see(role, 1, None)


def test_a_network_element_sees_no_subscribers_records() -> None:
    assert not may_see(Role.NETWORK, 3, 4)
