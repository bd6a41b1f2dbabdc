"""The web portal: server-rendered pages for subscribers (/) and staff (/console).

Pages call the same services as the API and hold no business rules of their own.
"""

from __future__ import annotations

from fastapi import APIRouter


def portal_routers() -> list[APIRouter]:
    from duckline.web.portal import (
        account_pages,
        console,
        line_care_pages,
        lines_pages,
        pages,
        privacy_pages,
        renew_pages,
        security_pages,
    )

    return [
        pages.router,
        lines_pages.router,
        line_care_pages.router,
        renew_pages.router,
        account_pages.router,
        security_pages.router,
        privacy_pages.router,
        console.router,
    ]
