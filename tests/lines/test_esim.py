"""ICCIDs and LPA activation codes (duckline.lines.esim)."""

from __future__ import annotations

import pytest
from stdnum import luhn

from duckline.lines.esim import activation_code, is_valid_iccid, make_iccid

PREFIX = "8985201"  # 89 (telecom) + 852 (Hong Kong) + issuer 01


@pytest.mark.parametrize("length", [19, 20])
@pytest.mark.parametrize("serial", [0, 1, 42, 123456789])
def test_make_iccid_has_length_prefix_serial_and_luhn_digit(length: int, serial: int) -> None:
    iccid = make_iccid(PREFIX, serial, length)
    assert len(iccid) == length
    assert iccid.isdigit()
    assert iccid.startswith(PREFIX)
    assert int(iccid[len(PREFIX) : -1]) == serial
    assert luhn.is_valid(iccid)
    assert is_valid_iccid(iccid)


def test_make_iccid_defaults_to_19_digits() -> None:
    # Body 898520100000000042, Luhn check digit computed by stdnum independently.
    body = "898520100000000042"
    assert make_iccid(PREFIX, 42) == body + luhn.calc_check_digit(body)
    assert len(make_iccid(PREFIX, 42)) == 19


def test_make_iccid_distinct_serials_give_distinct_iccids() -> None:
    assert len({make_iccid(PREFIX, serial) for serial in range(200)}) == 200


def test_make_iccid_largest_serial_that_fits() -> None:
    largest = 10 ** (19 - 1 - len(PREFIX)) - 1
    assert is_valid_iccid(make_iccid(PREFIX, largest))
    with pytest.raises(ValueError, match="does not fit"):
        make_iccid(PREFIX, largest + 1)


@pytest.mark.parametrize(
    ("prefix", "length"),
    [("8985201", 18), ("8985201", 21), ("9985201", 19), ("", 19), ("98", 20)],
)
def test_make_iccid_rejects_bad_length_or_prefix(prefix: str, length: int) -> None:
    with pytest.raises(ValueError, match="starts with 89"):
        make_iccid(prefix, 1, length)


def _with_check_digit(body: str) -> str:
    return body + luhn.calc_check_digit(body)


VALID_19 = _with_check_digit("898520100000000042")
VALID_20 = _with_check_digit("8985201000000000042")


def test_valid_fixtures_pass_luhn() -> None:
    assert luhn.is_valid(VALID_19)
    assert luhn.is_valid(VALID_20)


@pytest.mark.parametrize("iccid", [VALID_19, VALID_20])
def test_is_valid_iccid_accepts_19_and_20_digits(iccid: str) -> None:
    assert is_valid_iccid(iccid)


@pytest.mark.parametrize("iccid", [VALID_19, VALID_20])
def test_is_valid_iccid_rejects_every_wrong_check_digit(iccid: str) -> None:
    for digit in "0123456789":
        if digit != iccid[-1]:
            assert not is_valid_iccid(iccid[:-1] + digit)


def test_is_valid_iccid_rejects_swapped_adjacent_digits() -> None:
    # 0 and 4 in "...0042" swapped: Luhn catches adjacent transpositions like this one.
    swapped = VALID_19[:-4] + VALID_19[-3] + VALID_19[-4] + VALID_19[-2:]
    assert swapped != VALID_19
    assert not is_valid_iccid(swapped)


@pytest.mark.parametrize(
    "iccid",
    [
        _with_check_digit("89852010000000042"),  # 18 digits, Luhn-valid
        _with_check_digit("89852010000000000000"),  # 21 digits, Luhn-valid
        _with_check_digit("988520100000000042"),  # 19 digits, Luhn-valid, not 89
        _with_check_digit("123456789012345678"),
        "",
        "89852010000000004X",
        " " + VALID_19[1:],
        VALID_19 + " ",
        "8985-2010-0000-0000-42",
    ],
)
def test_is_valid_iccid_rejects_malformed(iccid: str) -> None:
    assert not is_valid_iccid(iccid)


def test_activation_code_format() -> None:
    assert activation_code("smdp.duckline.hk", "QR-G-5C-1LS-1W1Z9P7") == "LPA:1$smdp.duckline.hk$QR-G-5C-1LS-1W1Z9P7"


def test_activation_code_parts_can_be_split_back() -> None:
    code = activation_code("rsp.example.com", "ABCD-1234")
    assert code.split("$") == ["LPA:1", "rsp.example.com", "ABCD-1234"]
