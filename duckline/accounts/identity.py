"""Real-name registration (Hong Kong Cap. 106AI): identity documents, names, ages, masking.

Mainland resident ID numbers are checked by `python-stdnum` (cn.ric). stdnum has no Hong Kong
identity card module and no other well-kept package does, so the HKID check digit (mod 11 over
letter values, published by the Immigration Department) is computed here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

import filetype
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from duckline.core.errors import DomainError, ErrorCode


class DocumentType(StrEnum):
    HKID = "hkid"
    CN_RESIDENT_ID = "cn_resident_id"
    CN_TRAVEL_PERMIT = "cn_travel_permit"  # 往来港澳通行证 or 回乡证: C, H or M and 8 characters, no check digit
    PASSPORT = "passport"


class KycStatus(StrEnum):
    PENDING_REVIEW = "pending_review"
    VERIFIED = "verified"
    REJECTED = "rejected"


ACCEPTED_IMAGE_TYPES = {"image/jpeg", "image/png", "application/pdf"}
_HKID = re.compile(r"^([A-Z]{1,2})(\d{6})\(?([0-9A])\)?$")
_TRAVEL_PERMIT = re.compile(r"^[CHM][A-Z0-9]\d{7}$")
_PASSPORT = re.compile(r"^[A-Z0-9]{5,20}$")
_NAME_SEPARATORS = "·・"
_LATIN_NAME = re.compile(r"^[A-Za-z][A-Za-z .,'\-]{0,99}$")


def _hkid_check_digit(prefix: str, digits: str) -> str:
    letters = prefix.rjust(2)  # one-letter cards are padded with a space worth 36
    values = [36 if c == " " else ord(c) - ord("A") + 10 for c in letters] + [int(d) for d in digits]
    total = sum(value * weight for value, weight in zip(values, range(9, 1, -1), strict=True))
    check = (11 - total % 11) % 11
    return "A" if check == 10 else str(check)


def normalise_document_number(doc_type: DocumentType, raw: str) -> str:
    """Validate a document number and return its canonical form (upper case, no spaces)."""
    compact = re.sub(r"[\s\-]", "", raw or "").upper()
    if doc_type is DocumentType.HKID:
        match = _HKID.match(compact)
        if not match or _hkid_check_digit(match[1], match[2]) != match[3]:
            raise DomainError(ErrorCode.DOCUMENT_NUMBER_INVALID, field="document_number")
        return f"{match[1]}{match[2]}{match[3]}"
    if doc_type is DocumentType.CN_RESIDENT_ID:
        try:
            return str(ric.validate(compact))
        except ValidationError as exc:
            raise DomainError(ErrorCode.DOCUMENT_NUMBER_INVALID, field="document_number") from exc
    pattern = _TRAVEL_PERMIT if doc_type is DocumentType.CN_TRAVEL_PERMIT else _PASSPORT
    if not pattern.match(compact):
        raise DomainError(ErrorCode.DOCUMENT_NUMBER_INVALID, field="document_number")
    return compact


def mask_document_number(number: str) -> str:
    """Show enough to recognise a document, never enough to use it: A123***(*) style."""
    keep = 4 if len(number) > 8 else 2
    return number[:keep] + "*" * (len(number) - keep)


def birth_date_of_cn_resident_id(number: str) -> date:
    return ric.get_birth_date(number)


@dataclass(frozen=True)
class PersonName:
    english: str | None
    chinese: str | None


def validate_names(english: str | None, chinese: str | None) -> PersonName:
    english = " ".join(english.split()) if english else None
    chinese = chinese.strip() if chinese else None
    english, chinese = english or None, chinese or None  # blank is the same as not given
    if not english and not chinese:
        raise DomainError(ErrorCode.NAME_REQUIRED, field="name_en")
    if english and not _LATIN_NAME.match(english):
        raise DomainError(ErrorCode.NAME_REQUIRED, field="name_en")
    if chinese and not _is_chinese_name(chinese):
        raise DomainError(ErrorCode.NAME_REQUIRED, field="name_zh")
    return PersonName(english, chinese)


def _is_chinese_name(name: str) -> bool:
    """1–30 characters, all CJK or a middle dot, at least one of them CJK (e.g. 李娜, 阿不都·热依木)."""
    return (
        1 <= len(name) <= 30
        and all(_is_chinese_name_char(c) for c in name)
        and any(c not in _NAME_SEPARATORS for c in name)
    )


def _is_chinese_name_char(char: str) -> bool:
    return char in _NAME_SEPARATORS or unicodedata.name(char, "").startswith("CJK")


def age_on(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def validate_birth_date(birth: date, today: date) -> date:
    if birth > today or age_on(birth, today) > 130:
        raise DomainError(ErrorCode.BIRTH_DATE_INVALID, field="birth_date")
    return birth


def check_document_image(content: bytes, max_bytes: int) -> str:
    """Return the real content type of an uploaded document image, judged by its bytes."""
    if not content:  # no file chosen: browsers send an empty part, which is not a wrong format
        raise DomainError(ErrorCode.DOCUMENT_IMAGE_REQUIRED, field="document_image")
    if len(content) > max_bytes:
        raise DomainError(ErrorCode.DOCUMENT_IMAGE_TOO_LARGE, field="document_image", max_mb=max_bytes // (1024 * 1024))
    kind = filetype.guess(content)
    if kind is None or kind.mime not in ACCEPTED_IMAGE_TYPES:
        raise DomainError(ErrorCode.DOCUMENT_IMAGE_INVALID, field="document_image")
    return str(kind.mime)
