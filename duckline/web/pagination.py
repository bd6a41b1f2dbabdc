"""Keyset pagination lives with the reads in the service layer; this name stays for the routes
that still import it from here."""

from __future__ import annotations

from duckline.services.pagination import MAX_LIMIT, decode_cursor, encode_cursor, page

__all__ = ["MAX_LIMIT", "decode_cursor", "encode_cursor", "page"]
