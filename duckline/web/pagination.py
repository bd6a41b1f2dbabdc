"""Keyset pagination lives with the services that read the pages (duckline.core.pagination);
these names stay importable for the routes that have not moved their reads yet."""

from duckline.core.pagination import MAX_LIMIT, decode_cursor, encode_cursor, page

__all__ = ["MAX_LIMIT", "decode_cursor", "encode_cursor", "page"]
