"""QR images of eSIM activation codes, made by segno."""

from __future__ import annotations

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
