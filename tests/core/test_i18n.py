"""The gettext catalogues translate every message the code can show, and language negotiation works."""

from __future__ import annotations

import string

import pytest
from babel.messages.pofile import read_po

from duckline.billing.payment_labels import MESSAGE_IDS as PAYMENT_LABEL_IDS
from duckline.billing.receipt_pdf import LABELS as RECEIPT_LABELS
from duckline.core import i18n
from duckline.core.errors import ErrorCode
from duckline.core.money import Money
from duckline.messaging.notifications import MESSAGE_IDS as NOTIFICATION_IDS
from duckline.staff.audit_texts import MESSAGE_IDS as AUDIT_IDS
from duckline.support.case_texts import MESSAGE_IDS as CASE_IDS

CHINESE = ("zh_Hant", "zh_Hans")
MESSAGE_IDS = list(
    dict.fromkeys(
        [code.message for code in ErrorCode]
        + list(NOTIFICATION_IDS)
        + list(CASE_IDS)
        + list(RECEIPT_LABELS)
        + list(PAYMENT_LABEL_IDS)
        + list(AUDIT_IDS)
        + [text for text, _ in i18n.template_messages()]
    )
)


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def load_catalogue(language: str):
    with i18n.catalogue_path(language).open("rb") as source:
        return read_po(source, locale=language)


@pytest.mark.parametrize("language", CHINESE)
def test_every_message_is_translated_with_the_same_placeholders(language: str) -> None:
    # One test per language listing every fault (not one test per message: 2,500 tests cost more
    # in pytest-xdist's bookkeeping than the checks themselves).
    faults = []
    for message in MESSAGE_IDS:
        translated = i18n.gettext(language, message)
        if not translated.strip():
            faults.append(f"empty translation: {message!r}")
        elif translated == message:
            faults.append(f"missing translation: {message!r}")
        elif placeholders(translated) != placeholders(message):
            faults.append(f"other placeholders: {message!r} -> {translated!r}")
    assert not faults, f"{language}:\n" + "\n".join(faults)


@pytest.mark.parametrize("language", CHINESE)
def test_catalogue_is_clean_and_in_step_with_the_code(language: str) -> None:
    catalogue = load_catalogue(language)

    assert str(catalogue.locale) == language
    assert not [message.id for message in catalogue if message.fuzzy], "fuzzy entries"
    assert not catalogue.obsolete, "obsolete entries"
    assert {message.id for message in catalogue if message.id} == set(MESSAGE_IDS), "run scripts/extract_messages.py"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-HK,zh;q=0.9,en;q=0.8", "zh_Hant"),
        ("zh-TW", "zh_Hant"),
        ("zh-CN", "zh_Hans"),
        ("zh-Hans-HK", "zh_Hans"),
        ("fr-FR, en;q=0.5", "en"),
        ("", "en"),
        ("en-US;q=0.1, zh-CN;q=0.9", "zh_Hans"),
    ],
)
def test_negotiate(header: str, expected: str) -> None:
    assert i18n.negotiate(header) == expected


def test_money_is_formatted_for_hong_kong() -> None:
    price = Money(12800, "HKD")

    assert price.format("en_HK") == "HK$128.00"
    assert "128.00" in price.format(i18n.babel_locale("zh_Hant"))
