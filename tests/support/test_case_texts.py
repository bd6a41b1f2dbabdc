"""Cases Duckline opens itself read in the reader's language, from a topic and stored values."""

from __future__ import annotations

from duckline.core.errors import DomainError, ErrorCode
from duckline.support import case_texts


def test_money_is_formatted_for_each_language_and_the_provider_named() -> None:
    params = {
        "payment": 7,
        "order": 3,
        "provider": "wechatpay",
        "expected": case_texts.money(8800, "HKD"),
        "captured": case_texts.money(100, "HKD"),
    }

    subject, body = case_texts.render(case_texts.AMOUNT_MISMATCH, params, "en")
    _, traditional = case_texts.render(case_texts.AMOUNT_MISMATCH, params, "zh_Hant")

    assert subject == "Payment 7 captured a different amount"
    assert body.startswith("Order 3 expects HK$88.00; WeChat Pay captured HK$1.00.")
    assert traditional.startswith("訂單 3 應收 HK$88.00；微信支付 實收 HK$1.00。")


def test_an_amount_a_provider_reported_in_an_unknown_currency_is_still_shown() -> None:
    params = {"payment": 1, "order": 2, "provider": "acme", "expected": case_texts.money(8800, "HKD")}
    params["captured"] = case_texts.money(100, "XYZ1")

    _, body = case_texts.render(case_texts.AMOUNT_MISMATCH, params, "en")

    assert "acme captured 100 XYZ1." in body


def test_the_reason_is_the_error_code_translated_with_its_values() -> None:
    failure = DomainError(ErrorCode.LINE_LIMIT_REACHED, limit=10)
    params = {"order": 5, "reason": case_texts.error(failure)}

    assert params["reason"] == {"error": "line_limit_reached", "values": {"limit": "10"}}
    _, english = case_texts.render(case_texts.PAID_NOT_APPLIED, params, "en")
    _, simplified = case_texts.render(case_texts.PAID_NOT_APPLIED, params, "zh_Hans")
    assert english == "The renewal could not be applied: This identity already holds the maximum of 10 lines."
    assert simplified.startswith("续费未能生效：") and "10" in simplified and "maximum" not in simplified


def test_automatic_resolutions_are_translated_and_a_persons_words_are_not() -> None:
    assert case_texts.resolution(case_texts.REFUNDED_AUTOMATICALLY, "zh_Hant") == "已由對賬處理自動退款"
    assert case_texts.resolution("close: settled by phone", "zh_Hant") == "close: settled by phone"
    assert case_texts.resolution(None, "zh_Hans") is None
