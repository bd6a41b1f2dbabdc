"""Receipts and credit notes as A4 PDF, in English, 繁體中文 or 简体中文, made by ReportLab.

Chinese text needs a CJK font inside the PDF: a reader cannot be trusted to have one. ReportLab
subsets and embeds TrueType (glyf) fonts, so the font is a TrueType file the install provides:
WenQuanYi Micro Hei from Debian's ``fonts-wqy-microhei`` by default (its Latin letters are
Droid Sans, so English documents use it too and a Chinese customer name on an English receipt
still shows). CFF-flavoured OpenType fonts such as Noto Sans CJK cannot be embedded by ReportLab.
``DUCKLINE_RECEIPT_FONT`` names another TrueType file (.ttf, or .ttc whose first face is used).

Labels are gettext messages (see ``LABELS``), translated in the catalogues under duckline/locales.
Amounts are shown with ``Money.format`` and dates and times in Hong Kong time.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_interval, format_time, get_datetime_format
from reportlab.lib.colors import Color, HexColor
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas

from duckline.core import i18n
from duckline.core.money import Money

log = logging.getLogger(__name__)

FONT_ENV_VAR = "DUCKLINE_RECEIPT_FONT"
FONT_PACKAGE = "fonts-wqy-microhei"
# TrueType-outline CJK fonts, best first, with the Debian package that installs each.
KNOWN_FONTS: tuple[tuple[Path, str], ...] = (
    (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"), "fonts-wqy-microhei"),
    (Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"), "fonts-wqy-zenhei"),
    (Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"), "fonts-droid-fallback"),
)
DISPLAY_TIMEZONE = ZoneInfo("Asia/Hong_Kong")
KINDS = ("receipt", "credit_note")

# Message ids (English) of every text on a document; scripts/extract_messages.py collects them.
RECEIPT = "Receipt"
CREDIT_NOTE = "Credit note"
RECEIPT_NO = "Receipt no."
CREDIT_NOTE_NO = "Credit note no."
DATE = "Date"
CUSTOMER = "Customer"
NUMBER = "Number"
SERVICE_PERIOD = "Service period"
DESCRIPTION = "Description"
AMOUNT = "Amount"
TOTAL = "Total"
PAID_WITH = "Paid with"
REFUNDED_TO = "Refunded to"
REFUND_OF_RECEIPT = "Refund of receipt"
RECEIPT_FOOTER = "This receipt was issued electronically."
CREDIT_NOTE_FOOTER = "This credit note was issued electronically."
PAGE_OF = "Page {page} of {pages}"
# A receipt's line for what was bought, by the order's kind: a new line's first period is an
# activation, never a renewal.
ITEM_BY_KIND = {
    "activation": "Activation: {plan}",
    "renewal": "Renewal: {plan}",
    "change": "Plan change: {plan}",
    "addon": "Add-on pack: {plan}",
}
LABELS: tuple[str, ...] = (
    RECEIPT,
    CREDIT_NOTE,
    RECEIPT_NO,
    CREDIT_NOTE_NO,
    DATE,
    CUSTOMER,
    NUMBER,
    SERVICE_PERIOD,
    DESCRIPTION,
    AMOUNT,
    TOTAL,
    PAID_WITH,
    REFUNDED_TO,
    REFUND_OF_RECEIPT,
    RECEIPT_FOOTER,
    CREDIT_NOTE_FOOTER,
    PAGE_OF,
    *ITEM_BY_KIND.values(),
)
_WORDING = {
    # kind: (title, number label, payment label, footer)
    "receipt": (RECEIPT, RECEIPT_NO, PAID_WITH, RECEIPT_FOOTER),
    "credit_note": (CREDIT_NOTE, CREDIT_NOTE_NO, REFUNDED_TO, CREDIT_NOTE_FOOTER),
}
_PDF_LANG = {"en": "en-HK", "zh_Hant": "zh-Hant-HK", "zh_Hans": "zh-Hans"}


@dataclass(frozen=True)
class ReceiptDocument:
    kind: str  # "receipt" or "credit_note"
    number: str  # e.g. "R2026-000123" / "CN2026-000004"
    issued_at: datetime  # aware UTC; shown in Asia/Hong_Kong
    language: str  # "en", "zh_Hant" or "zh_Hans"
    operator_name: str  # e.g. "Duckline"
    customer_name: str  # e.g. "陳大文" or "CHAN Tai Man"
    msisdn: str  # e.g. "+852 5170 0000"
    items: list[tuple[str, int]]  # (description in the document language, minor units; discounts negative)
    total: int  # minor units
    currency: str  # ISO 4217, e.g. "HKD"
    period: tuple[datetime, datetime] | None  # service period (aware UTC), shown as Hong Kong dates
    payment_method: str  # already masked, e.g. "Visa •••• 4242"
    reference: str | None = None  # for a credit note: the receipt it refunds

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.language not in i18n.LANGUAGES:
            raise ValueError(f"language must be one of {i18n.LANGUAGES}, not {self.language!r}")
        moments = [self.issued_at, *(self.period or ())]
        if any(moment.tzinfo is None for moment in moments):
            raise ValueError("issued_at and the service period must be aware datetimes")
        if self.period and self.period[1] < self.period[0]:
            raise ValueError("the service period ends before it starts")
        if not self.items:
            raise ValueError("a document needs at least one item")
        Money(self.total, self.currency)  # validates the currency code
        if sum(amount for _, amount in self.items) != self.total:
            raise ValueError(f"items add up to {sum(a for _, a in self.items)}, not to the total {self.total}")


def find_cjk_font() -> Path:
    """The TrueType CJK font to embed: $DUCKLINE_RECEIPT_FONT, else the first known one installed."""
    configured = os.environ.get(FONT_ENV_VAR, "").strip()
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise FileNotFoundError(f"{FONT_ENV_VAR} is set to {configured!r}, but there is no such font file")
        return path
    for path, _package in KNOWN_FONTS:
        if path.is_file():
            return path
    searched = ", ".join(str(path) for path, _ in KNOWN_FONTS)
    raise FileNotFoundError(
        f"No CJK TrueType font for receipts: looked for {searched}. "
        f"Install Debian's {FONT_PACKAGE} package (apt-get install -y {FONT_PACKAGE}), "
        f"or set {FONT_ENV_VAR} to a TrueType .ttf/.ttc file with Chinese glyphs."
    )


@cache
def _register_font(path: str) -> str:
    """Register the font with ReportLab once per file; returns its ReportLab name."""
    name = "DucklineCJK-" + hashlib.sha256(path.encode()).hexdigest()[:12]
    try:
        font = TTFont(name, path, subfontIndex=0)
    except TTFError as exc:
        raise ValueError(
            f"cannot embed {path}: {exc}. ReportLab embeds only TrueType-outline fonts; "
            f"CFF-based OpenType fonts (such as Noto Sans CJK) will not do. Install {FONT_PACKAGE}."
        ) from exc
    pdfmetrics.registerFont(font)
    return name


# ReportLab keeps per-document font subsetting state on the shared font object: one render at a time.
_render_lock = threading.Lock()


def render_pdf(doc: ReceiptDocument, font_path: Path | None = None) -> bytes:
    """The document as a PDF: A4, the CJK font subset and embedded, title = the document's number.

    The same document always gives the same bytes (its PDF dates are its issue time).
    """
    path = font_path or find_cjk_font()
    if not path.is_file():
        raise FileNotFoundError(f"no font file at {path}")
    with _render_lock:
        font = _register_font(str(path.resolve()))
        _warn_missing_glyphs(doc, font)
        return _Renderer(doc, font).render()


def _warn_missing_glyphs(doc: ReceiptDocument, font: str) -> None:
    texts = [doc.operator_name, doc.customer_name, doc.msisdn, doc.payment_method, doc.number, doc.reference or ""]
    texts += [description for description, _ in doc.items]
    cmap = pdfmetrics.getFont(font).face.charToGlyph
    missing = sorted({ch for text in texts for ch in text if not ch.isspace() and ord(ch) not in cmap})
    if missing:
        log.warning("receipt %s: font %s has no glyph for %s", doc.number, font, " ".join(missing))


# Layout, in points.
PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 20 * mm
CONTENT_WIDTH = PAGE_WIDTH - 2 * MARGIN
BOTTOM = MARGIN + 14 * mm  # the footer lives below this
LABEL_WIDTH = 38 * mm
AMOUNT_WIDTH = 42 * mm
CELL_PAD = 7
BODY_SIZE = 10.5
LABEL_SIZE = 9
LEADING = 1.4

INK = HexColor("#1f2933")
ACCENT = HexColor("#14507a")
MUTED = HexColor("#5f6b7a")
RULE = HexColor("#d5dbe1")
SHADE = HexColor("#eef2f6")


def _hk(moment: datetime) -> datetime:
    return moment.astimezone(UTC).astimezone(DISPLAY_TIMEZONE)


class _Renderer:
    def __init__(self, doc: ReceiptDocument, font: str) -> None:
        self.doc = doc
        self.font = font
        self.locale = i18n.babel_locale(doc.language)
        self.title, self.number_label, self.payment_label, self.footer = (self._(text) for text in _WORDING[doc.kind])
        buffer = io.BytesIO()
        self.buffer = buffer
        self.canvas = Canvas(buffer, pagesize=A4, invariant=True, lang=_PDF_LANG[doc.language], initialFontName=font)
        self.y = PAGE_HEIGHT - MARGIN

    def _(self, message: str) -> str:
        return i18n.gettext(self.doc.language, message)

    def money(self, amount: int) -> str:
        return Money(amount, self.doc.currency).format(self.locale)

    # --- the document -------------------------------------------------------------------------

    def render(self) -> bytes:
        doc, canvas = self.doc, self.canvas
        issued = doc.issued_at.astimezone(UTC)
        canvas.setTitle(doc.number)
        canvas.setAuthor(doc.operator_name)
        canvas.setSubject(f"{self.title} {doc.number}")
        canvas.setCreator(doc.operator_name)
        canvas.setDateFormatter(lambda *_: issued.strftime("D:%Y%m%d%H%M%S+00'00'"))

        pages = self._paginate()
        for index, rows in enumerate(pages):
            if index:
                canvas.showPage()
            self.y = PAGE_HEIGHT - MARGIN
            self._header(first=index == 0)
            if index == 0:
                self._details()
            self._table_head()
            for description_lines, amount in rows:
                self._item(description_lines, amount)
            if index == len(pages) - 1:
                self._total()
            self._footer(index + 1, len(pages))
        canvas.showPage()
        canvas.save()
        return self.buffer.getvalue()

    def _detail_rows(self) -> list[tuple[str, str]]:
        doc = self.doc
        issued = _hk(doc.issued_at)
        rows = [
            (self.number_label, doc.number),
            (self._(DATE), _format_moment(issued, self.locale)),
        ]
        if doc.reference:
            rows.append((self._(REFUND_OF_RECEIPT), doc.reference))
        rows += [(self._(CUSTOMER), doc.customer_name), (self._(NUMBER), doc.msisdn)]
        if doc.period:
            start, end = (_hk(moment).date() for moment in doc.period)
            rows.append((self._(SERVICE_PERIOD), _format_period(start, end, self.locale)))
        rows.append((self.payment_label, doc.payment_method))
        return rows

    def _paginate(self) -> list[list[tuple[list[str], int]]]:
        """Split the items over pages; the details go on the first page, the total on the last."""
        value_width = CONTENT_WIDTH - LABEL_WIDTH
        details_height = sum(
            len(self.wrap(value, BODY_SIZE, value_width)) * BODY_SIZE * LEADING + 4 for _, value in self._detail_rows()
        )
        first_top = PAGE_HEIGHT - MARGIN - self._header_height() - details_height - 10 * mm
        other_top = PAGE_HEIGHT - MARGIN - self._header_height()
        room = first_top - self._table_head_height() - BOTTOM
        pages: list[list[tuple[list[str], int]]] = [[]]
        for description, amount in self.doc.items:
            lines = self.wrap(description, BODY_SIZE, CONTENT_WIDTH - AMOUNT_WIDTH - 2 * CELL_PAD)
            height = self._item_height(lines)
            if height > room and pages[-1]:
                pages.append([])
                room = other_top - self._table_head_height() - BOTTOM
            pages[-1].append((lines, amount))
            room -= height
        if room < self._total_height() and pages[-1]:
            # the total never stands alone: it takes the last item to the next page with it
            pages.append([pages[-1].pop()])
            if not pages[-2]:
                pages.pop(-2)
        return pages

    # --- blocks ---------------------------------------------------------------------------

    def _header_height(self) -> float:
        return 20 + 8 + 6 * mm

    def _header(self, first: bool) -> None:
        canvas = self.canvas
        top = self.y
        baseline = top - 20
        self.text(MARGIN, baseline, self.doc.operator_name, 20, ACCENT, bold=True)
        title = self.title if first else f"{self.title} {self.doc.number}"
        self.text(PAGE_WIDTH - MARGIN, baseline, title, 16 if first else 11, INK, align="right")
        rule_y = baseline - 8
        canvas.setStrokeColor(ACCENT)
        canvas.setLineWidth(1.5)
        canvas.line(MARGIN, rule_y, PAGE_WIDTH - MARGIN, rule_y)
        self.y = rule_y - 6 * mm

    def _details(self) -> None:
        value_width = CONTENT_WIDTH - LABEL_WIDTH
        for label, value in self._detail_rows():
            lines = self.wrap(value, BODY_SIZE, value_width)
            baseline = self.y - BODY_SIZE
            self.text(MARGIN, baseline, label, LABEL_SIZE, MUTED)
            for line in lines:
                self.text(MARGIN + LABEL_WIDTH, baseline, line, BODY_SIZE, INK)
                baseline -= BODY_SIZE * LEADING
            self.y -= len(lines) * BODY_SIZE * LEADING + 4
        self.y -= 10 * mm

    def _table_head_height(self) -> float:
        return LABEL_SIZE + 2 * CELL_PAD

    def _table_head(self) -> None:
        canvas = self.canvas
        height = self._table_head_height()
        canvas.setFillColor(SHADE)
        canvas.rect(MARGIN, self.y - height, CONTENT_WIDTH, height, stroke=0, fill=1)
        baseline = self.y - CELL_PAD - LABEL_SIZE * 0.85
        self.text(MARGIN + CELL_PAD, baseline, self._(DESCRIPTION), LABEL_SIZE, MUTED, bold=True)
        self.text(PAGE_WIDTH - MARGIN - CELL_PAD, baseline, self._(AMOUNT), LABEL_SIZE, MUTED, bold=True, align="right")
        self.y -= height

    def _item_height(self, lines: list[str]) -> float:
        return len(lines) * BODY_SIZE * LEADING + 2 * CELL_PAD - BODY_SIZE * (LEADING - 1)

    def _item(self, lines: list[str], amount: int) -> None:
        canvas = self.canvas
        baseline = self.y - CELL_PAD - BODY_SIZE * 0.85
        self.text(PAGE_WIDTH - MARGIN - CELL_PAD, baseline, self.money(amount), BODY_SIZE, INK, align="right")
        for line in lines:
            self.text(MARGIN + CELL_PAD, baseline, line, BODY_SIZE, INK)
            baseline -= BODY_SIZE * LEADING
        self.y -= self._item_height(lines)
        canvas.setStrokeColor(RULE)
        canvas.setLineWidth(0.6)
        canvas.line(MARGIN, self.y, PAGE_WIDTH - MARGIN, self.y)

    def _total_height(self) -> float:
        return 13 + 2 * CELL_PAD + 4

    def _total(self) -> None:
        canvas = self.canvas
        canvas.setStrokeColor(INK)
        canvas.setLineWidth(1.2)
        canvas.line(MARGIN, self.y, PAGE_WIDTH - MARGIN, self.y)
        baseline = self.y - CELL_PAD - 13 * 0.85 - 3
        self.text(MARGIN + CELL_PAD, baseline, self._(TOTAL), 13, INK, bold=True)
        self.text(
            PAGE_WIDTH - MARGIN - CELL_PAD, baseline, self.money(self.doc.total), 13, INK, bold=True, align="right"
        )
        self.y -= self._total_height()

    def _footer(self, page: int, pages: int) -> None:
        canvas = self.canvas
        rule_y = MARGIN + 8 * mm
        canvas.setStrokeColor(RULE)
        canvas.setLineWidth(0.6)
        canvas.line(MARGIN, rule_y, PAGE_WIDTH - MARGIN, rule_y)
        baseline = MARGIN + 2 * mm
        self.text(MARGIN, baseline, self.footer, 8.5, MUTED)
        if pages > 1:
            numbering = self._(PAGE_OF).format(page=page, pages=pages)
            self.text(PAGE_WIDTH - MARGIN, baseline, numbering, 8.5, MUTED, align="right")

    # --- text -----------------------------------------------------------------------------

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: float,
        color: Color,
        bold: bool = False,
        align: str = "left",
    ) -> None:
        """One line of text. The CJK font has no bold face, so bold is the glyphs stroked as well as filled."""
        canvas = self.canvas
        canvas.setFont(self.font, size)
        canvas.setFillColor(color)
        draw: Callable[..., None] = canvas.drawRightString if align == "right" else canvas.drawString
        if bold:
            canvas.setStrokeColor(color)
            canvas.setLineWidth(size * 0.035)
            draw(x, y, text, mode=2)
        else:
            draw(x, y, text)

    def wrap(self, text: str, size: float, width: float) -> list[str]:
        return _wrap(text, lambda s: pdfmetrics.stringWidth(s, self.font, size), width)


def _format_moment(moment: datetime, locale: str) -> str:
    """A long date and a short time in Hong Kong, joined as the locale joins them ("24 November 2026, 2:05 pm")."""
    local = _hk(moment)
    day = format_date(local, "long", locale=locale)
    time = format_time(local, "short", tzinfo=DISPLAY_TIMEZONE, locale=locale)
    return str(get_datetime_format("medium", locale=locale)).replace("{1}", day).replace("{0}", time)


def _format_period(start: date, end: date, locale: str) -> str:
    if start == end:
        return format_date(start, "long", locale=locale)
    return format_interval(start, end, "yMMMd", locale=locale)


# A line may break between words, before or after any CJK character, but never before closing
# punctuation (，。、）」 …) nor after opening punctuation (（「 …).
_CJK = r"\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CLOSING = "，。、；：！？）」』】》〉’”,.;:!?)]}%"
_OPENING = "（「『【《〈‘“([{"
_TOKEN = re.compile(rf"[{re.escape(_OPENING)}]*(?:[{_CJK}]|[^\s{_CJK}]+)[{re.escape(_CLOSING)}]*|\s+")


def _wrap(text: str, measure: Callable[[str], float], width: float) -> list[str]:
    """Greedy line breaking for mixed Chinese and Latin text; a word too long for a line is cut."""
    lines: list[str] = []
    line = ""
    for token in _TOKEN.findall(" ".join(text.split())):
        if measure(line + token) <= width:
            line += token
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = "" if token.isspace() else token
        while measure(line) > width and len(line) > 1:
            cut = max(1, max(i for i in range(1, len(line) + 1) if measure(line[:i]) <= width or i == 1))
            lines.append(line[:cut])
            line = line[cut:]
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines
