"""The web portal: server-rendered pages for subscribers (/) and staff (/console).

Pages call the same services as the API and hold no business rules of their own.
"""

from __future__ import annotations

from fastapi import APIRouter


def portal_routers() -> list[APIRouter]:
    from duckline.accounts.pages import account as account_pages
    from duckline.accounts.pages import privacy as privacy_pages
    from duckline.accounts.pages import registration as registration_pages
    from duckline.accounts.pages import security as security_pages
    from duckline.billing import renew_pages
    from duckline.lines import care_pages as line_care_pages
    from duckline.lines import pages as lines_pages
    from duckline.sip import pages as sip_pages
    from duckline.staff import console
    from duckline.support import pages as support_pages
    from duckline.web.portal import pages

    return [
        pages.router,
        registration_pages.router,
        lines_pages.router,
        line_care_pages.router,
        sip_pages.router,
        renew_pages.router,
        account_pages.router,
        support_pages.router,
        security_pages.router,
        privacy_pages.router,
        console.router,
    ]
