"""Keyset pagination lives with the services that read the pages (duckline.services.pagination);
these names stay importable for the routes that have not moved their reads yet."""

from duckline.services.pagination import MAX_LIMIT, decode_cursor, encode_cursor, page

__all__ = ["MAX_LIMIT", "decode_cursor", "encode_cursor", "page"]
