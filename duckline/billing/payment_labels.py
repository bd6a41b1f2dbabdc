"""How a payment method is named to people — receipts, credit notes, the console and the portal all
ask here, so a payment reads the same everywhere: a wallet by its name (and the masked account the
wallet reported), a card by its brand and last four digits; never more.

The method decides, not the card fields: a provider that plays several methods (the sandbox's
hosted page takes a test card number for Alipay too) may report card details for a wallet payment,
and a receipt must name what the payer actually chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from duckline.billing.order_states import PaymentMethod
from duckline.core import i18n

CARD = "Card"
SANDBOX = "Sandbox"
WALLET_NAMES = {PaymentMethod.ALIPAY.value: "Alipay", PaymentMethod.WECHATPAY.value: "WeChat Pay"}
WALLET_WITH_ACCOUNT = "{wallet} ({account})"
# Brands are trademarks, written the same in every language.
_BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "unionpay": "UnionPay"}
_CARD_METHODS = frozenset({PaymentMethod.CARD.value, PaymentMethod.SANDBOX.value})

MESSAGE_IDS: tuple[str, ...] = (CARD, SANDBOX, *WALLET_NAMES.values(), WALLET_WITH_ACCOUNT)


class _Paid(Protocol):
    """A payment, or a saved payment method: what the label is made of."""

    @property
    def method(self) -> PaymentMethod: ...
    @property
    def card_brand(self) -> str | None: ...
    @property
    def card_last4(self) -> str | None: ...


def is_card(method: str | PaymentMethod) -> bool:
    """Card details belong to card payments only (the sandbox's own method plays a card)."""
    return str(method) in _CARD_METHODS


def label(payment: _Paid | None) -> dict[str, str | None]:
    """What a receipt keeps of the method: kept as data, named when shown (in the reader's language)."""
    if payment is None:
        return {"method": "none", "brand": None, "last4": None, "wallet_account": None}
    card = is_card(payment.method)
    return {
        "method": payment.method.value,
        "brand": payment.card_brand if card else None,
        "last4": payment.card_last4 if card else None,
        "wallet_account": None if card else getattr(payment, "wallet_account", None),
    }


def text(kept: Mapping[str, str | None], language: str) -> str:
    """The method as a reader sees it, e.g. "Visa •••• 4242", "支付宝（138****8000）"."""
    method = kept.get("method") or "none"
    if method in WALLET_NAMES:
        wallet = i18n.gettext(language, WALLET_NAMES[method])
        account = kept.get("wallet_account")
        return i18n.gettext(language, WALLET_WITH_ACCOUNT).format(wallet=wallet, account=account) if account else wallet
    last4, brand = kept.get("last4"), kept.get("brand") or ""
    if last4:
        return f"{_BRANDS.get(brand.lower(), brand.title() or i18n.gettext(language, CARD))} •••• {last4}"
    if method == PaymentMethod.SANDBOX.value:
        return i18n.gettext(language, SANDBOX)
    if method == PaymentMethod.CARD.value:
        return i18n.gettext(language, CARD)
    return "—"  # nothing was paid (a free order)


def describe(payment: _Paid | None, language: str) -> str:
    return text(label(payment), language)
