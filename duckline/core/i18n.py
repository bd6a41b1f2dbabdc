"""Languages: English, 繁體中文 (zh_Hant) and 简体中文 (zh_Hans), from gettext catalogues.

The .po files are the source of truth; they are compiled in memory at first use, so there is
no build step and no compiled file that can drift from its source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LANGUAGES = ("en", "zh_Hant", "zh_Hans")
DEFAULT_LANGUAGE = "en"
LOCALES_DIR = Path(__file__).parent.parent / "locales"
DOMAIN = "duckline"
_TRADITIONAL_TERRITORIES = {"TW", "HK", "MO"}


def normalise_language(tag: str | None) -> str | None:
    """Map a language tag (zh-HK, zh-Hant-TW, zh_CN, en-GB …) to one we serve, or None."""
    if not tag:
        return None
    try:
        loc = Locale.parse(tag.strip().replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return None
    if loc.language == "en":
        return "en"
    if loc.language == "zh":
        script = loc.script or ("Hant" if loc.territory in _TRADITIONAL_TERRITORIES else "Hans")
        return f"zh_{script}"
    return None


def negotiate(accept_language: str | None) -> str:
    """Pick our first language in the order of an Accept-Language header (q-values honoured)."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if quality <= 0:  # q=0 means "not acceptable"
            continue
        ranked.append((-quality, index, tag))
    for _, _, tag in sorted(ranked):
        language = normalise_language(tag)
        if language:
            return language
    return DEFAULT_LANGUAGE


def catalogue_path(language: str) -> Path:
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(language: str) -> NullTranslations:
    if language not in LANGUAGES or language == DEFAULT_LANGUAGE:
        return NullTranslations()
    with catalogue_path(language).open("rb") as source:
        catalog = read_po(source, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


def gettext(language: str, message: str) -> str:
    return translations(language).gettext(message)


def format_message(language: str, message: str, params: Mapping[str, Any]) -> str:
    """`message` translated, its {placeholders} filled; a duration (timedelta) is written out in
    the language ("40 minutes", "40分钟")."""
    translated = gettext(language, message)
    if not params:
        return translated
    shown = {
        name: format_duration(language, value) if isinstance(value, timedelta) else value
        for name, value in params.items()
    }
    return translated.format(**shown)


def format_duration(language: str, duration: timedelta) -> str:
    """A wait in seconds, minutes or (from two hours) hours, rounded up so it is never understated."""
    seconds = max(1, math.ceil(duration.total_seconds()))
    for unit in (3600, 60):
        if seconds > 2 * unit:
            seconds = math.ceil(seconds / unit) * unit
            break
    # threshold 2: a unit is used from two of it on ("90 minutes", not "2 hours")
    return format_timedelta(timedelta(seconds=seconds), threshold=2, locale=babel_locale(language))


def babel_locale(language: str) -> str:
    """The Babel locale used to format money and dates for one of our languages."""
    return {"en": "en_HK", "zh_Hant": "zh_Hant_HK", "zh_Hans": "zh_Hans_CN"}.get(language, "en_HK")


PACKAGE_DIR = Path(__file__).parent.parent


def template_folders() -> list[Path]:
    """Every templates/ folder: each feature package's (its pages) and web's (what they share).

    Found on disk rather than listed, so a package that grows pages only adds the folder."""
    return sorted(PACKAGE_DIR.glob("*/templates"))


def template_messages() -> list[tuple[str, str]]:
    """(message id, template path under duckline/) for every `_("…")` in the templates."""
    from babel.messages.extract import extract_from_dir

    return [
        (message, f"{folder.relative_to(PACKAGE_DIR).as_posix()}/{filename}")
        for folder in template_folders()
        for filename, _line, message, _comments, _context in extract_from_dir(
            str(folder),
            method_map=[("**.html", "jinja2.ext:babel_extract")],
            options_map={"**.html": {"extensions": "jinja2.ext.i18n"}},
        )
        if isinstance(message, str)
    ]
