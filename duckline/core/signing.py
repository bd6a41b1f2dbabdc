"""HMAC-SHA256 signatures with a timestamp (`t=<unix>,v1=<hex>`), as Stripe-style webhooks use:
the timestamp is signed too, so a captured request cannot be replayed later."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, now: float, tolerance_seconds: int = 300) -> bool:
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header) and abs(now - timestamp) <= tolerance_seconds
