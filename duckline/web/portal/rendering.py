"""Rendering portal pages: the caller's language, gettext in templates, CSRF tokens, flashes.

Templates use `_("English text")`; the texts are gettext message ids translated in
duckline/locales (extracted from the templates by scripts/extract_messages.py).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from datetime import date as day
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time, get_datetime_format
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from duckline.accounts.models import Account
from duckline.accounts.phone import display
from duckline.billing import payment_labels
from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.money import Money
from duckline.runtime import Runtime
from duckline.support import cases as tickets
from duckline.web.deps import csrf_token as session_csrf_token
from duckline.web.deps import session_token_from_cookie

LANGUAGE_COOKIE = "duckline_lang"
ANON_CSRF_COOKIE = "duckline_csrf"
LANGUAGE_NAMES = {"en": "English", "zh_Hant": "繁體中文", "zh_Hans": "简体中文"}
HTML_LANG = {"en": "en", "zh_Hant": "zh-Hant-HK", "zh_Hans": "zh-Hans"}

# One template name space over every package's templates/ folder: a page template lives in the
# package whose pages render it (billing/templates/portal/renew.html, staff/templates/console/
# audit.html), the shared ones (base.html, console/layout.html, the macros) in web/templates, and
# every name stays the path under its folder ("portal/renew.html"), so a page, an {% extends %} or
# an {% import %} never says which package a template is in. A name lives in one folder only
# (tests/web/test_templates.py), so the order of the loaders decides nothing.
env = Environment(
    loader=ChoiceLoader([FileSystemLoader(folder) for folder in i18n.template_folders()]),
    autoescape=select_autoescape(["html"]),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
# Missing message ids are recorded here when a test asks (see tests/portal); production ignores them.
missing_translations: set[tuple[str, str]] | None = None


def page_language(request: Request, account: Account | None) -> str:
    """The account's language, else the visitor's cookie, else the browser's Accept-Language."""
    if account is not None and account.language in i18n.LANGUAGES:
        return account.language
    cookie = request.cookies.get(LANGUAGE_COOKIE)
    if cookie in i18n.LANGUAGES:
        return str(cookie)
    return i18n.negotiate(request.headers.get("accept-language"))


def gettext_for(language: str) -> Callable[..., str]:
    translations = i18n.translations(language)

    def _(message: str, **params: Any) -> str:
        translated = translations.gettext(message)
        if missing_translations is not None and language != "en" and translated == message:
            missing_translations.add((language, message))
        return translated.format(**params) if params else translated

    return _


def anonymous_csrf(request: Request) -> str:
    return request.cookies.get(ANON_CSRF_COOKIE) or secrets.token_urlsafe(24)


def form_csrf(request: Request, runtime: Runtime) -> str:
    """Forms carry the session's CSRF token; before login, a double-submit cookie's value."""
    token = session_token_from_cookie(request, runtime)
    return session_csrf_token(runtime, token) if token else anonymous_csrf(request)


def check_csrf(request: Request, runtime: Runtime, submitted: str | None) -> None:
    expected = form_csrf(request, runtime)
    if not submitted or (not request.cookies.get(ANON_CSRF_COOKIE) and not session_token_from_cookie(request, runtime)):
        raise DomainError(ErrorCode.CSRF_FAILED)
    if not hmac.compare_digest(submitted, expected):
        raise DomainError(ErrorCode.CSRF_FAILED)


def render(
    request: Request, runtime: Runtime, template: str, account: Account | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    language = page_language(request, account)
    tz = ZoneInfo(account.timezone if account else runtime.settings.display_timezone)
    locale = i18n.babel_locale(language)
    minute_pattern = str(get_datetime_format("medium", locale=locale)).replace("'", "")  # e.g. "{1}, {0}"
    csrf = form_csrf(request, runtime)

    def money(amount: int, currency: str = "HKD") -> str:
        return Money(amount, currency).format(locale)

    def date(value: datetime | day | None, style: str = "medium") -> str:
        """A moment, as the reader's calendar day; or a calendar day as it is (a date of birth)."""
        if value is None:
            return "—"
        shown = value.astimezone(tz).date() if isinstance(value, datetime) else value
        return format_date(shown, style, locale=locale)

    def when(value: datetime | None) -> str:
        """Date and time to the minute: seconds are noise to a reader."""
        if value is None:
            return "—"
        shown = value.astimezone(tz)
        return minute_pattern.format(
            format_time(shown, "short", locale=locale), format_date(shown, "medium", locale=locale)
        )

    html = env.get_template(template).render(
        _=gettext_for(language),
        request=request,
        account=account,
        language=language,
        languages=LANGUAGE_NAMES,
        html_lang=HTML_LANG[language],
        csrf_token=csrf,
        money=money,
        date=date,
        when=when,
        case=lambda ticket: tickets.describe(ticket, language),
        paid_with=lambda payment: payment_labels.describe(payment, language),
        msisdn=display,
        path=request.url.path,
        now=runtime.clock.now(),
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if not session_token_from_cookie(request, runtime) and not request.cookies.get(ANON_CSRF_COOKIE):
        response.set_cookie(
            ANON_CSRF_COOKIE,
            csrf,
            httponly=True,
            samesite="strict",
            secure=runtime.settings.environment == "production",
            path="/",
        )
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def error_text(language: str, error: DomainError) -> str:
    return i18n.format_message(language, error.error.message, error.params)


__all__ = ["Response", "check_csrf", "error_text", "form_csrf", "page_language", "redirect", "render"]
