"""Identity documents, names, ages and document images (duckline.accounts.identity)."""

from __future__ import annotations

from datetime import date

import pytest
from stdnum.cn import ric

from duckline.accounts.identity import (
    DocumentType,
    PersonName,
    age_on,
    birth_date_of_cn_resident_id,
    check_document_image,
    mask_document_number,
    normalise_document_number,
    validate_birth_date,
    validate_names,
)
from duckline.core.errors import DomainError, ErrorCode

MIB = 1024 * 1024


def _cn_id(body17: str) -> str:
    """A Mainland resident ID with the correct check character (stdnum wants a placeholder last char)."""
    return body17 + ric.calc_check_digit(body17 + "0")


# 110101 is Beijing Dongcheng, born 7 Mar 1990, sequence 123.
CN_ID = _cn_id("11010119900307123")


def _invalid(doc_type: DocumentType, raw: str) -> DomainError:
    with pytest.raises(DomainError) as info:
        normalise_document_number(doc_type, raw)
    assert info.value.error is ErrorCode.DOCUMENT_NUMBER_INVALID
    assert info.value.field == "document_number"
    return info.value


# --- HKID ---------------------------------------------------------------------------------------


# Worked by hand (letter A=10 ... Z=35, a missing first letter counts 36; weights 9..2; 11 - sum % 11):
#   A123456: 36*9 + 10*8 + 1*7 + 2*6 + 3*5 + 4*4 + 5*3 + 6*2 = 481, 481 % 11 = 8 -> 3
#   G123456: 324 + 16*8 + 77 = 529, 529 % 11 = 1 -> 10 -> "A"
#   AB987654: 10*9 + 11*8 + 9*7 + 8*6 + 7*5 + 6*4 + 5*3 + 4*2 = 371, 371 % 11 = 8 -> 3
#   B987654: 324 + 11*8 + 193 = 605, 605 % 11 = 0 -> 0 (not 11)
#   C668668: 324 + 12*8 + 6*7 + 6*6 + 8*5 + 6*4 + 6*3 + 8*2 = 596, 596 % 11 = 2 -> 9
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A123456(3)", "A1234563"),
        ("A1234563", "A1234563"),
        ("a123456(3)", "A1234563"),
        (" A 123 456 (3) ", "A1234563"),
        ("A123456 (3)", "A1234563"),
        ("A123456-3", "A1234563"),
        ("G123456(A)", "G123456A"),
        ("g123456(a)", "G123456A"),
        ("AB987654(3)", "AB9876543"),
        ("ab 987654 (3)", "AB9876543"),
        ("C668668(9)", "C6686689"),
        ("B987654(0)", "B9876540"),
    ],
)
def test_hkid_valid_numbers_are_normalised(raw: str, expected: str) -> None:
    assert normalise_document_number(DocumentType.HKID, raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "A123456(4)",  # wrong check digit
        "A123456(A)",  # wrong check digit, letter form
        "G123456(0)",  # the check digit of G123456 is A, not 0
        "AB987654(4)",  # two-letter prefix, wrong check digit
        "B987654(3)",  # dropping a letter changes the sum: B987654 checks to 0
        "A12345(3)",  # five digits
        "A1234567(3)",  # seven digits
        "ABC123456(3)",  # three letters
        "123456(3)",  # no letter
        "A123456(B)",  # only 0-9 and A are check characters
        "A123456",  # no check digit
        "A123456()",
        "",
    ],
)
def test_hkid_invalid_numbers_are_rejected(raw: str) -> None:
    _invalid(DocumentType.HKID, raw)


def test_hkid_every_wrong_check_character_is_rejected() -> None:
    accepted = []
    for check in "0123456789A":
        try:
            normalise_document_number(DocumentType.HKID, f"A123456({check})")
        except DomainError:
            continue
        accepted.append(check)
    assert accepted == ["3"]


# --- Mainland resident ID -----------------------------------------------------------------------


def test_cn_resident_id_fixture_is_valid_by_stdnum() -> None:
    assert ric.is_valid(CN_ID)
    assert len(CN_ID) == 18


def test_cn_resident_id_valid_is_returned_compact() -> None:
    assert normalise_document_number(DocumentType.CN_RESIDENT_ID, CN_ID) == CN_ID
    spaced = f"{CN_ID[:6]} {CN_ID[6:14]} {CN_ID[14:]}"
    assert normalise_document_number(DocumentType.CN_RESIDENT_ID, spaced) == CN_ID


def test_cn_resident_id_lower_case_x_check_character_is_upper_cased() -> None:
    # Find a real number whose check character is X by varying the sequence number.
    number = next(n for n in (_cn_id(f"11010119900307{seq:03d}") for seq in range(1000)) if n.endswith("X"))
    assert normalise_document_number(DocumentType.CN_RESIDENT_ID, number.lower()) == number


def test_cn_resident_id_wrong_check_character_is_rejected() -> None:
    wrong = CN_ID[:-1] + ("0" if CN_ID[-1] != "0" else "1")
    _invalid(DocumentType.CN_RESIDENT_ID, wrong)


@pytest.mark.parametrize(
    "raw",
    [
        CN_ID[:-1],  # 17 characters
        CN_ID + "1",  # 19 characters
        _cn_id("44030419850229123"),  # 29 Feb 1985 does not exist, even with a correct check character
        _cn_id("00000019900307123"),  # no such place
        "",
    ],
)
def test_cn_resident_id_malformed_is_rejected(raw: str) -> None:
    _invalid(DocumentType.CN_RESIDENT_ID, raw)


def test_birth_date_is_read_from_cn_resident_id() -> None:
    assert birth_date_of_cn_resident_id(CN_ID) == date(1990, 3, 7)
    assert birth_date_of_cn_resident_id(_cn_id("11010120000229002")) == date(2000, 2, 29)


# --- Travel permits and passports ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("C12345678", "C12345678"),  # 往来港澳通行证 card
        ("CA1234567", "CA1234567"),  # letter in the second position
        ("c 1234 5678", "C12345678"),
        ("H12345678", "H12345678"),  # 回乡证, Hong Kong resident
        ("M12345678", "M12345678"),  # 回乡证, Macau resident
    ],
)
def test_travel_permit_valid(raw: str, expected: str) -> None:
    assert normalise_document_number(DocumentType.CN_TRAVEL_PERMIT, raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["W12345678", "A12345678", "C123456", "C123456789012", "C1234567X", "12345678", ""],
)
def test_travel_permit_invalid(raw: str) -> None:
    _invalid(DocumentType.CN_TRAVEL_PERMIT, raw)


@pytest.mark.parametrize("raw", ["C1234567", "CA12345678"])
def test_travel_permit_of_wrong_length_is_rejected(raw: str) -> None:
    _invalid(DocumentType.CN_TRAVEL_PERMIT, raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("E12345678", "E12345678"),
        ("k1234567", "K1234567"),
        ("K-1234 567", "K1234567"),
        ("12345", "12345"),  # 5 is the shortest accepted
        ("A" * 20, "A" * 20),  # 20 the longest
    ],
)
def test_passport_valid(raw: str, expected: str) -> None:
    assert normalise_document_number(DocumentType.PASSPORT, raw) == expected


@pytest.mark.parametrize("raw", ["1234", "A" * 21, "E1234567!", "E12/34567", "Ä1234567", ""])
def test_passport_invalid(raw: str) -> None:
    _invalid(DocumentType.PASSPORT, raw)


# --- Masking ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("A1234563", "A1******"),
        ("AB9876543", "AB98*****"),
        ("12345", "12***"),
        (CN_ID, CN_ID[:4] + "*" * 14),
    ],
)
def test_mask_document_number(number: str, expected: str) -> None:
    assert mask_document_number(number) == expected


@pytest.mark.parametrize("number", ["12345", "A1234563", "C12345678", "AB9876543", CN_ID, "E" * 20])
def test_mask_keeps_length_and_reveals_only_a_short_prefix(number: str) -> None:
    masked = mask_document_number(number)
    assert len(masked) == len(number)
    revealed = len(masked.rstrip("*"))
    assert revealed <= 4
    assert revealed < len(number) / 2
    assert masked[:revealed] == number[:revealed]
    assert set(masked[revealed:]) == {"*"}


# --- Names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("english", "chinese", "expected"),
    [
        ("Chan Tai Man", "陳大文", PersonName("Chan Tai Man", "陳大文")),
        ("  Chan   Tai\tMan ", None, PersonName("Chan Tai Man", None)),
        (None, " 陈大文 ", PersonName(None, "陈大文")),
        ("O'Brien-Smith, Jr.", None, PersonName("O'Brien-Smith, Jr.", None)),
        (None, "阿沛·阿旺晋美", PersonName(None, "阿沛·阿旺晋美")),
        ("", "李小龍", PersonName(None, "李小龍")),
        ("Lee", "", PersonName("Lee", None)),
        ("A" * 100, None, PersonName("A" * 100, None)),
        (None, "陳" * 30, PersonName(None, "陳" * 30)),
    ],
)
def test_valid_names(english: str | None, chinese: str | None, expected: PersonName) -> None:
    assert validate_names(english, chinese) == expected


@pytest.mark.parametrize(
    ("english", "chinese", "field"),
    [
        (None, None, "name_en"),
        ("", "", "name_en"),
        ("   ", "  ", "name_en"),
        ("Chan Tai Man1", None, "name_en"),  # digits
        ("-Chan", None, "name_en"),  # must start with a letter
        ("陳大文", None, "name_en"),  # Chinese in the English field
        ("A" * 101, None, "name_en"),
        (None, "Chan", "name_zh"),  # Latin in the Chinese field
        (None, "陳大文1", "name_zh"),
        (None, "陳 大文", "name_zh"),  # inner space
        (None, "陳" * 31, "name_zh"),
        ("Chan Tai Man", "陳大文!", "name_zh"),  # a good English name does not excuse a bad Chinese one
    ],
)
def test_invalid_names(english: str | None, chinese: str | None, field: str) -> None:
    with pytest.raises(DomainError) as info:
        validate_names(english, chinese)
    assert info.value.error is ErrorCode.NAME_REQUIRED
    assert info.value.field == field


@pytest.mark.parametrize("chinese", ["·", "・・", "··"])
def test_chinese_name_of_only_separators_is_rejected(chinese: str) -> None:
    with pytest.raises(DomainError) as info:
        validate_names(None, chinese)
    assert info.value.error is ErrorCode.NAME_REQUIRED
    assert info.value.field == "name_zh"


def test_blank_name_beside_a_real_one_is_none() -> None:
    assert validate_names("   ", "陳大文") == PersonName(None, "陳大文")
    assert validate_names("Chan Tai Man", " \u3000 ") == PersonName("Chan Tai Man", None)


# --- Ages and birth dates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "today", "age"),
    [
        (date(2000, 6, 15), date(2018, 6, 14), 17),  # day before the birthday
        (date(2000, 6, 15), date(2018, 6, 15), 18),  # on the birthday
        (date(2000, 6, 15), date(2018, 6, 16), 18),
        (date(2000, 6, 15), date(2018, 5, 31), 17),  # an earlier month with a later day
        (date(2000, 12, 31), date(2001, 1, 1), 0),
        (date(2000, 1, 1), date(2000, 1, 1), 0),
        # Born on a leap day: in a common year the birthday counts from 1 March.
        (date(2000, 2, 29), date(2018, 2, 28), 17),
        (date(2000, 2, 29), date(2018, 3, 1), 18),
        (date(2000, 2, 29), date(2020, 2, 28), 19),
        (date(2000, 2, 29), date(2020, 2, 29), 20),
    ],
)
def test_age_on(birth: date, today: date, age: int) -> None:
    assert age_on(birth, today) == age


@pytest.mark.parametrize(
    "birth",
    # today, ordinary, turned 130 today, 130 until tomorrow
    [date(2027, 6, 15), date(1990, 1, 1), date(1897, 6, 15), date(1896, 6, 16)],
)
def test_birth_date_accepted(birth: date) -> None:
    assert validate_birth_date(birth, date(2027, 6, 15)) == birth


@pytest.mark.parametrize(
    "birth",
    [date(2027, 6, 16), date(2100, 1, 1), date(1896, 6, 15)],  # tomorrow, far future, turned 131 today
)
def test_birth_date_rejected(birth: date) -> None:
    with pytest.raises(DomainError) as info:
        validate_birth_date(birth, date(2027, 6, 15))
    assert info.value.error is ErrorCode.BIRTH_DATE_INVALID
    assert info.value.field == "birth_date"


# --- Document images ----------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!"


@pytest.mark.parametrize(
    ("content", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (PDF, "application/pdf")],
)
def test_document_image_accepted_by_its_bytes(content: bytes, mime: str) -> None:
    assert check_document_image(content, max_bytes=MIB) == mime


@pytest.mark.parametrize(
    "content",
    [
        GIF,
        b"Name: Chan Tai Man\nHKID: A123456(3)\n",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",  # a zip file
    ],
)
def test_document_image_of_other_types_rejected(content: bytes) -> None:
    with pytest.raises(DomainError) as info:
        check_document_image(content, max_bytes=MIB)
    assert info.value.error is ErrorCode.DOCUMENT_IMAGE_INVALID
    assert info.value.field == "document_image"


def test_no_document_image_is_missing_not_of_a_wrong_type() -> None:
    with pytest.raises(DomainError) as info:
        check_document_image(b"", max_bytes=MIB)
    assert info.value.error is ErrorCode.DOCUMENT_IMAGE_REQUIRED
    assert info.value.field == "document_image"


def test_document_image_size_limit_is_inclusive() -> None:
    content = PNG + b"\x00" * (5 * MIB - len(PNG))
    assert len(content) == 5 * MIB
    assert check_document_image(content, max_bytes=5 * MIB) == "image/png"


def test_document_image_over_the_limit_rejected_before_type_check() -> None:
    content = PNG + b"\x00" * (5 * MIB - len(PNG) + 1)
    with pytest.raises(DomainError) as info:
        check_document_image(content, max_bytes=5 * MIB)
    assert info.value.error is ErrorCode.DOCUMENT_IMAGE_TOO_LARGE
    assert info.value.field == "document_image"
    assert info.value.params == {"max_mb": 5}
    assert "5 MB" in str(info.value)
