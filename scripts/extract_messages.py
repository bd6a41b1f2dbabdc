"""Rebuild duckline/locales/messages.pot from the code and merge it into each language's .po file.

The message ids are the English texts of ``ErrorCode``, the notification and case ``MESSAGE_IDS``, the
receipt PDF ``LABELS`` and the portal templates' ``_("…")``. Existing translations are kept; new
messages arrive untranslated (or fuzzy, when Babel finds a close old one) and messages gone from
the code are dropped. Run from the repository root:

    .venv/bin/python scripts/extract_messages.py
"""

from __future__ import annotations

import string
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duckline import __version__
from duckline.billing.payment_labels import MESSAGE_IDS as PAYMENT_LABEL_IDS
from duckline.billing.receipt_pdf import LABELS as RECEIPT_LABELS
from duckline.core import i18n
from duckline.core.errors import ErrorCode
from duckline.messaging.notifications import MESSAGE_IDS
from duckline.staff.audit_texts import MESSAGE_IDS as AUDIT_MESSAGE_IDS
from duckline.support.case_texts import MESSAGE_IDS as CASE_MESSAGE_IDS

PROJECT = "duckline"
LANGUAGE_TEAMS = {"zh_Hant": "Traditional Chinese (Hong Kong)", "zh_Hans": "Simplified Chinese"}


def collect() -> list[tuple[str, str, str]]:
    """(message id, source file, what the message is) for every message the code can show."""
    messages = [(code.message, "duckline/core/errors.py", f"ErrorCode.{code.name}") for code in ErrorCode]
    messages += [(text, "duckline/messaging/notifications.py", "notification texts") for text in MESSAGE_IDS]
    messages += [(text, "duckline/support/case_texts.py", "reconciliation case texts") for text in CASE_MESSAGE_IDS]
    messages += [(text, "duckline/billing/receipt_pdf.py", "LABELS (receipt PDF)") for text in RECEIPT_LABELS]
    messages += [(text, "duckline/billing/payment_labels.py", "payment method label") for text in PAYMENT_LABEL_IDS]
    messages += [(text, "duckline/staff/audit_texts.py", "audit log") for text in AUDIT_MESSAGE_IDS]
    messages += [(text, f"duckline/{name}", "portal page") for text, name in i18n.template_messages()]
    return messages


def has_placeholders(message: str) -> bool:
    return any(field is not None for _, field, _, _ in string.Formatter().parse(message))


def build_template() -> Catalog:
    template = Catalog(
        project=PROJECT,
        version=__version__,
        domain=i18n.DOMAIN,
        charset="utf-8",
        header_comment=f"# Message template for {PROJECT}, written by scripts/extract_messages.py.\n#",
    )
    for message, path, comment in collect():
        template.add(
            message,
            locations=[(path, None)],  # type: ignore[list-item]  # no line numbers
            auto_comments=[comment],
            flags=["python-brace-format"] if has_placeholders(message) else [],
        )
    return template


def write(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as target:
        write_po(target, catalog, ignore_obsolete=True, include_lineno=False)


def main() -> None:
    template = build_template()
    write(template, i18n.LOCALES_DIR / "messages.pot")
    for language in i18n.LANGUAGES:
        if language == i18n.DEFAULT_LANGUAGE:
            continue
        path = i18n.catalogue_path(language)
        if path.exists():
            with path.open("rb") as source:
                catalog = read_po(source, locale=language)
        else:
            catalog = Catalog(
                locale=language,
                domain=i18n.DOMAIN,
                project=PROJECT,
                charset="utf-8",
                fuzzy=False,
                language_team=LANGUAGE_TEAMS.get(language),
                header_comment=f"# {LANGUAGE_TEAMS.get(language, language)} messages for {PROJECT}.\n#",
            )
        catalog.update(template)
        catalog.version = template.version
        write(catalog, path)
        untranslated = sum(1 for message in catalog if message.id and (not message.string or message.fuzzy))
        print(f"{path}: {len(catalog)} messages, {untranslated} to translate")


if __name__ == "__main__":
    main()
