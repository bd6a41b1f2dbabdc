"""QR images of eSIM activation codes and SIP accounts, made by segno."""

from __future__ import annotations

import base64
import io

import segno


def qr_png(data: str, scale: int = 6) -> bytes:
    out = io.BytesIO()
    segno.make(data, error="m").save(out, kind="png", scale=scale, border=2)
    return out.getvalue()


def qr_svg(data: str, scale: int = 6) -> bytes:
    out = io.BytesIO()
    segno.make(data, error="m").save(out, kind="svg", scale=scale, border=2, xmldecl=False)
    return out.getvalue()


def qr_svg_data_uri(data: str, scale: int = 6) -> str:
    """The image inline in the page, for a secret shown once (a SIP password) that no later
    request could fetch: the Content-Security-Policy allows data: images, not inline scripts."""
    return "data:image/svg+xml;base64," + base64.b64encode(qr_svg(data, scale)).decode("ascii")
