"""How a payment is named to people (duckline.billing.payment_labels): the method decides."""

from __future__ import annotations

import pytest

from duckline.billing.payment_labels import text


@pytest.mark.parametrize(
    ("kept", "language", "expected"),
    [
        ({"method": "alipay", "wallet_account": "abc***@example.com"}, "en", "Alipay (abc***@example.com)"),
        ({"method": "alipay", "wallet_account": "abc***@example.com"}, "zh_Hans", "支付宝（abc***@example.com）"),
        ({"method": "alipay"}, "zh_Hant", "支付寶"),
        ({"method": "wechatpay"}, "zh_Hans", "微信支付"),
        # A wallet payment kept with a card's details (as the sandbox used to report) is still the wallet.
        ({"method": "alipay", "brand": "visa", "last4": "4242"}, "en", "Alipay"),
        ({"method": "card", "brand": "visa", "last4": "4242"}, "zh_Hans", "Visa •••• 4242"),
        ({"method": "sandbox", "brand": "mastercard", "last4": "4444"}, "en", "Mastercard •••• 4444"),
        ({"method": "card", "brand": None, "last4": "4242"}, "zh_Hant", "信用卡 •••• 4242"),
        ({"method": "card"}, "en", "Card"),
        ({"method": "none"}, "en", "—"),
    ],
)
def test_the_label_names_the_method_paid_with(kept: dict[str, str | None], language: str, expected: str) -> None:
    assert text(kept, language) == expected
