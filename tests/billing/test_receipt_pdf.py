"""Receipts and credit notes as PDF (duckline.billing.receipt_pdf).

The PDFs are read back with poppler-utils (pdftotext, pdfinfo, pdftoppm) and page 1 of each is
rendered to PNG in test-artifacts/receipts/ (git-ignored) so a person can look at it. A missing
font or missing poppler-utils fails the tests with the package to install: nothing is skipped.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from duckline.billing import receipt_pdf
from duckline.billing.receipt_pdf import LABELS, ReceiptDocument, find_cjk_font, render_pdf
from duckline.core import i18n
from duckline.core.money import Money

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "receipts"
ISSUED = datetime(2026, 11, 24, 6, 5, tzinfo=UTC)  # 14:05 in Hong Kong
PERIOD = (ISSUED, datetime(2026, 12, 24, 6, 5, tzinfo=UTC))

ZH_HANT_RECEIPT = ReceiptDocument(
    kind="receipt",
    number="R2026-000123",
    issued_at=ISSUED,
    language="zh_Hant",
    operator_name="Duckline",
    customer_name="陳大文",
    msisdn="+852 5170 0000",
    items=[
        ("本地數據月費計劃 30GB（30 日）", 12800),
        ("國際漫遊附加包：中國內地及澳門 5GB", 4800),
        ("推廣優惠折扣", -2000),
    ],
    total=15600,
    currency="HKD",
    period=PERIOD,
    payment_method="Visa •••• 4242",
)
ZH_HANS_CREDIT_NOTE = ReceiptDocument(
    kind="credit_note",
    number="CN2026-000004",
    issued_at=datetime(2026, 11, 30, 17, 30, tzinfo=UTC),  # 1 December, 01:30 in Hong Kong
    language="zh_Hans",
    operator_name="Duckline",
    customer_name="王小明",
    msisdn="+852 5170 0001",
    items=[("退还：本地数据月费计划 30GB（未使用部分）", 9600)],
    total=9600,
    currency="HKD",
    period=None,
    payment_method="Alipay (138****8000)",
    reference="R2026-000123",
)
EN_RECEIPT = ReceiptDocument(
    kind="receipt",
    number="R2026-000124",
    issued_at=ISSUED,
    language="en",
    operator_name="Duckline",
    customer_name="CHAN Tai Man",
    msisdn="+852 5170 0002",
    items=[("Local data plan 30GB (30 days)", 12800), ("Promotion discount", -2000)],
    total=10800,
    currency="HKD",
    period=PERIOD,
    payment_method="Mastercard •••• 5100",
)


def poppler(tool: str, *args: str | Path) -> str:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: install Debian's poppler-utils (apt-get install -y poppler-utils)")
    done = subprocess.run([tool, *map(str, args)], capture_output=True, text=True, check=True, timeout=60)  # noqa: S603
    return done.stdout


def squash(text: str) -> str:
    return "".join(text.split())


def write_pdf(pdf: bytes, name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    return path


def page_png(pdf_path: Path, name: str, tmp_path: Path, page: int = 1) -> Path:
    """Render one page at 80 dpi into tmp_path, and copy it to test-artifacts/receipts/."""
    stem = tmp_path / f"{name}-p{page}"
    poppler("pdftoppm", "-png", "-r", "80", "-f", str(page), "-l", str(page), "-singlefile", pdf_path, stem)
    png = stem.with_suffix(".png")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(png, ARTIFACTS / png.name)
    shutil.copyfile(pdf_path, ARTIFACTS / pdf_path.name)
    return png


def assert_drawn(png: Path) -> None:
    with Image.open(png) as image:
        width, height = image.size
        assert abs(width - 662) <= 1 and abs(height - 935) <= 1, image.size  # A4 at 80 dpi
        darkest, _ = image.convert("L").getextrema()
        assert darkest < 80, "the page is blank"


def test_the_cjk_font_is_installed() -> None:
    path = find_cjk_font()  # FileNotFoundError names the Debian package when it is missing

    assert path.is_file()


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            ZH_HANT_RECEIPT,
            [
                "Duckline",
                "收據",
                "收據編號",
                "R2026-000123",
                "日期",
                "2026年11月24日 下午2:05",
                "客戶",
                "陳大文",
                "電話號碼",
                "+852 5170 0000",
                "服務期",
                "2026年11月24日至12月24日",
                "項目",
                "金額",
                "本地數據月費計劃 30GB（30 日）",
                "國際漫遊附加包：中國內地及澳門 5GB",
                "推廣優惠折扣",
                "HK$128.00",
                "HK$48.00",
                "-HK$20.00",
                "總額",
                "HK$156.00",
                "付款方式",
                "Visa •••• 4242",
                "此收據以電子方式發出。",
            ],
        ),
        (
            ZH_HANS_CREDIT_NOTE,
            [
                "退款单",
                "退款单编号",
                "CN2026-000004",
                "原收据编号",
                "R2026-000123",
                "2026年12月1日 01:30",
                "客户",
                "王小明",
                "手机号码",
                "退还：本地数据月费计划 30GB（未使用部分）",
                "HK$96.00",
                "合计",
                "退款至",
                "Alipay (138****8000)",
                "此退款单以电子方式开具。",
            ],
        ),
        (
            EN_RECEIPT,
            [
                "Receipt",
                "Receipt no.",
                "R2026-000124",
                "Date",
                "24 November 2026, 2:05 pm",
                "Customer",
                "CHAN Tai Man",
                "Number",
                "Service period",
                "24 Nov – 24 Dec 2026",
                "Description",
                "Amount",
                "Local data plan 30GB (30 days)",
                "HK$128.00",
                "Promotion discount",
                "-HK$20.00",
                "Total",
                "HK$108.00",
                "Paid with",
                "Mastercard •••• 5100",
                "This receipt was issued electronically.",
            ],
        ),
    ],
    ids=["receipt-zh_Hant", "credit_note-zh_Hans", "receipt-en"],
)
def test_document_embeds_the_font_and_reads_back(
    doc: ReceiptDocument, expected: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=receipt_pdf.__name__):
        pdf = render_pdf(doc)

    assert not caplog.records, "the font lacks glyphs for some text (it would show as tofu)"
    assert pdf.startswith(b"%PDF-")
    assert b"/FontFile2" in pdf, "the TrueType font is not embedded"
    name = f"{doc.kind}_{doc.language}"
    path = write_pdf(pdf, name, tmp_path)
    info = poppler("pdfinfo", path)
    assert f"Title:           {doc.number}\n" in info
    assert "Pages:           1\n" in info
    assert "Page size:       595.276 x 841.89 pts (A4)" in info
    fonts = poppler("pdffonts", path)
    assert "WenQuanYiMicroHei" in fonts or "CJK" in fonts
    assert not [line for line in fonts.splitlines()[2:] if " no " in line.split("TrueType")[-1][:20]]
    text = squash(poppler("pdftotext", "-enc", "UTF-8", path, "-"))
    missing = [piece for piece in expected if squash(piece) not in text]
    assert not missing, f"not in the PDF text: {missing}"
    assert Money(doc.total, doc.currency).format(i18n.babel_locale(doc.language)) in text
    assert_drawn(page_png(path, name, tmp_path))


def test_every_label_is_translated_in_the_chinese_documents() -> None:
    for language in ("zh_Hant", "zh_Hans"):
        untranslated = [label for label in LABELS if i18n.gettext(language, label) == label]
        assert not untranslated, f"{language}: {untranslated}"


def test_same_document_gives_the_same_bytes() -> None:
    assert render_pdf(ZH_HANT_RECEIPT) == render_pdf(ZH_HANT_RECEIPT)
    assert b"/CreationDate (D:20261124060500+00'00')" in render_pdf(ZH_HANT_RECEIPT)


def test_long_documents_wrap_and_go_onto_more_pages(tmp_path: Path) -> None:
    long_description = (
        "本地數據月費計劃 30GB，包括中國內地及澳門漫遊數據 5GB、無限本地通話分鐘及 100 個本地短訊（30 日）"
    )
    items = [(f"{index + 1}. {long_description}", 1000) for index in range(30)]
    doc = ReceiptDocument(
        kind="receipt",
        number="R2026-000999",
        issued_at=ISSUED,
        language="zh_Hant",
        operator_name="Duckline",
        customer_name="陳大文",
        msisdn="+852 5170 0000",
        items=items,
        total=30000,
        currency="HKD",
        period=PERIOD,
        payment_method="Visa •••• 4242",
    )
    path = write_pdf(render_pdf(doc), "receipt_zh_Hant_long", tmp_path)

    pages = int(poppler("pdfinfo", path).split("Pages:")[1].split()[0])
    assert pages >= 2
    first, last = (squash(poppler("pdftotext", "-f", str(n), "-l", str(n), path, "-")) for n in (1, pages))
    assert f"第1頁，共{pages}頁" in first
    assert "項目" in last, "the table head is repeated on every page"
    assert "總額" in last and "HK$300.00" in last
    assert "總額" not in first
    whole = squash(poppler("pdftotext", path, "-"))
    assert all(squash(description) in whole for description, _ in items), "wrapping lost characters"
    for page in range(1, pages + 1):
        assert_drawn(page_png(path, "receipt_zh_Hant_long", tmp_path, page))


def test_wrapping_breaks_between_words_and_chinese_characters() -> None:
    def measure(text: str) -> float:
        return float(len(text))

    assert receipt_pdf._wrap("Local data plan thirty", measure, 10) == ["Local data", "plan", "thirty"]
    assert receipt_pdf._wrap("本地數據月費計劃", measure, 3) == ["本地數", "據月費", "計劃"]
    # closing punctuation never starts a line; a word longer than a line is cut
    assert receipt_pdf._wrap("甲乙。丙", measure, 2) == ["甲", "乙。", "丙"]
    assert receipt_pdf._wrap("abcdefgh", measure, 3) == ["abc", "def", "gh"]
    assert receipt_pdf._wrap("", measure, 3) == [""]


def test_missing_font_fails_with_the_package_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(receipt_pdf.FONT_ENV_VAR, raising=False)
    monkeypatch.setattr(receipt_pdf, "KNOWN_FONTS", ((tmp_path / "nowhere.ttc", "fonts-wqy-microhei"),))

    with pytest.raises(FileNotFoundError, match="apt-get install -y fonts-wqy-microhei"):
        find_cjk_font()
    with pytest.raises(FileNotFoundError, match="fonts-wqy-microhei"):
        render_pdf(EN_RECEIPT)


def test_font_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = find_cjk_font()
    monkeypatch.setenv(receipt_pdf.FONT_ENV_VAR, str(installed))
    assert find_cjk_font() == installed

    monkeypatch.setenv(receipt_pdf.FONT_ENV_VAR, str(tmp_path / "missing.ttf"))
    with pytest.raises(FileNotFoundError, match=receipt_pdf.FONT_ENV_VAR):
        find_cjk_font()


def test_a_file_that_is_not_a_truetype_font_is_refused(tmp_path: Path) -> None:
    not_a_font = tmp_path / "font.otf"
    not_a_font.write_bytes(b"OTTO" + bytes(60))

    with pytest.raises(ValueError, match="TrueType"):
        render_pdf(EN_RECEIPT, font_path=not_a_font)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"total": 15601}, "add up"),
        ({"kind": "invoice"}, "kind"),
        ({"language": "fr"}, "language"),
        ({"issued_at": datetime(2026, 11, 24, 6, 5)}, "aware"),
        ({"period": (PERIOD[1], PERIOD[0])}, "ends before"),
        ({"items": [], "total": 0}, "at least one item"),
        ({"currency": "XYZ"}, "ISO 4217"),
    ],
)
def test_document_is_checked(change: dict[str, object], message: str) -> None:
    fields = {name: getattr(ZH_HANT_RECEIPT, name) for name in ReceiptDocument.__dataclass_fields__}

    with pytest.raises(ValueError, match=message):
        ReceiptDocument(**{**fields, **change})  # type: ignore[arg-type]
