"""An account's contact details that a code must prove before they change."""

from __future__ import annotations

from enum import StrEnum


class ContactKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
