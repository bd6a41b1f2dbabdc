"""Money held for an order: captured beyond what the order keeps, and not yet given back."""

from __future__ import annotations

import pytest

from duckline.billing.order_states import OrderStatus, held_amount


@pytest.mark.parametrize(
    ("status", "refunded", "captures", "held"),
    [
        (OrderStatus.FULFILLED, 0, [(8800, 0)], 0),  # paid once
        (OrderStatus.FULFILLED, 0, [(8800, 0), (8800, 0)], 8800),  # captured twice
        (OrderStatus.FULFILLED, 0, [(8800, 0), (8800, 8800)], 0),  # the second given back
        (OrderStatus.FULFILLED, 0, [(8800, 8800), (8800, 0)], 0),  # or the first: the order is paid once still
        (OrderStatus.PARTIALLY_REFUNDED, 3000, [(8800, 3000), (8800, 0)], 8800),  # the order's own refund
        (OrderStatus.REFUNDED, 8800, [(8800, 8800)], 0),
        (OrderStatus.PAYMENT_PENDING, 0, [(880, 0)], 880),  # a capture of the wrong amount: nothing is paid for
        (OrderStatus.CANCELLED, 0, [], 0),
    ],
)
def test_held_amount(status: OrderStatus, refunded: int, captures: list[tuple[int, int]], held: int) -> None:
    assert held_amount(status, 8800, refunded, captures) == held
