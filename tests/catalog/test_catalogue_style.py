"""The Chinese catalogues keep one register and full-width punctuation, and the templates hold no Chinese.

Each language addresses the reader one way: 简体中文 uses the polite 您 (as Mainland carriers and
banks do), 繁體中文 (Hong Kong) uses 你 (as Hong Kong carriers do). Chinese sentences use full-width
punctuation; half-width marks stay only where they belong to something that is not Chinese prose:
placeholders and their format specs, URLs, HTML tags, times (10:00), amounts and codes.
"""

from __future__ import annotations

import re
import string

import pytest
from babel.messages.pofile import read_po

from duckline.core import i18n

# The reader's register: the pronoun each language must not use.
WRONG_PRONOUN = {"zh_Hans": "你", "zh_Hant": "您"}

# Chinese characters; full-width punctuation is not counted, so "A123456(3)。" (an HKID) passes.
CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
HAS_CJK = re.compile(f"[{CJK}]")
# What is not prose is blanked out before the punctuation is checked (to a neutral letter, so a
# colon after "{amount}" is judged by what stands on its other side).
NOT_PROSE = re.compile(r"\{[^{}]*\}|<[^<>]*>|https?://\S+|&[a-z]+;")
# A half-width mark with a Chinese character right before or after it, spaces aside.
HALF_WIDTH_BY_CJK = re.compile(f"(?:(?<=[{CJK}])[ ]*[():;!?,])|(?:[():;!?,](?=[ ]*[{CJK}]))")
# Half-width parentheses around Chinese: "(原价)", "(减 HK$17.60)".
PARENTHESES_AROUND_CJK = re.compile(f"\\([^()]*[{CJK}][^()]*\\)")


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def entries(language: str) -> list[tuple[str, str]]:
    """(msgid, msgstr) for every message of the catalogue, plural forms included."""
    with i18n.catalogue_path(language).open("rb") as source:
        catalogue = read_po(source, locale=language)
    pairs: list[tuple[str, str]] = []
    for message in catalogue:
        if not message.id:
            continue  # the header
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        pairs += [(ids[min(index, len(ids) - 1)], text) for index, text in enumerate(strings)]
    return pairs


def half_width_marks(text: str) -> list[str]:
    """The half-width marks standing in Chinese prose, each shown with a little context."""
    prose = NOT_PROSE.sub("x", text)
    found = [prose[max(0, m.start() - 2) : m.end() + 2] for m in HALF_WIDTH_BY_CJK.finditer(prose)]
    found += [m.group(0) for m in PARENTHESES_AROUND_CJK.finditer(prose)]
    return found


def violations(language: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"empty": [], "register": [], "punctuation": [], "placeholders": []}
    for msgid, msgstr in entries(language):
        if not msgstr.strip():
            found["empty"].append(msgid)
            continue
        if WRONG_PRONOUN[language] in msgstr:
            found["register"].append(msgstr)
        if marks := half_width_marks(msgstr):
            found["punctuation"].append(f"{msgstr!r}: {marks}")
        if placeholders(msgstr) != placeholders(msgid):
            found["placeholders"].append(f"{msgid!r} -> {msgstr!r}")
    return found


@pytest.mark.parametrize("language", sorted(WRONG_PRONOUN))
@pytest.mark.parametrize("rule", ["empty", "register", "punctuation", "placeholders"])
def test_catalogue_follows_the_house_style(language: str, rule: str) -> None:
    assert violations(language)[rule] == []


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("价格(原价)", True),
        ("付款方式:", True),
        ("合计 {amount}(减 HK$17.60)", True),
        ("您好,请付款", True),
        ("确定吗?", True),
        ("金额:{amount}", True),
        ("{amount},请于今日付款", True),
        ("营业时间 10:00 至 18:00。", False),
        ("金额 {amount:>10}。", False),
        ("请访问 https://duckline.example/orders?id=1,2 查看。", False),
        ('<a href="{url}">账单</a>（Bills: monthly, net）', False),
        ("HK$17.60 (HKD)", False),
        ("例如 A123456(3)。", False),
        ("价格（原价）：{amount}，谢谢！", False),
    ],
)
def test_the_punctuation_rule(text: str, flagged: bool) -> None:
    assert bool(half_width_marks(text)) is flagged


# In a template, a half-width mark glued to a translated text: `({{ _("list price") }})`, `{{ _("Pay with") }}:`.
# The mark belongs in the message, where each language writes it its own way.
PUNCTUATION_AROUND_MESSAGE = re.compile(r"\(\{\{ *_\(|\{\{ *_\(\"[^\"]*\"\) *\}\} *[:;!?)]")


def template_lines() -> list[tuple[str, int, str]]:
    return [
        (str(path.relative_to(i18n.PACKAGE_DIR)), number, line.strip())
        for folder in i18n.template_folders()
        for path in sorted(folder.rglob("*.html")) + sorted(folder.rglob("*.txt"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
    ]


def test_templates_put_no_punctuation_around_a_message() -> None:
    found = [
        f"{name}:{number}: {line}" for name, number, line in template_lines() if PUNCTUATION_AROUND_MESSAGE.search(line)
    ]
    assert found == []


def test_templates_hold_no_chinese_text() -> None:
    """Chinese reaches a page only through the catalogues (``_("…")``), never typed into a template."""
    found = [f"{name}:{number}: {line}" for name, number, line in template_lines() if HAS_CJK.search(line)]
    assert found == []
