"""eSIM profiles: ICCIDs with a Luhn check digit and LPA activation codes (GSMA SGP.22)."""

from __future__ import annotations

from stdnum import luhn


def make_iccid(prefix: str, serial: int, length: int = 19) -> str:
    """An ICCID of `length` digits (19 or 20): prefix (89 + country + issuer), serial, Luhn digit."""
    if length not in (19, 20) or not prefix.startswith("89"):
        raise ValueError("an ICCID starts with 89 and has 19 or 20 digits")
    body_length = length - 1 - len(prefix)
    body = prefix + str(serial).zfill(body_length)
    if len(body) != length - 1:
        raise ValueError("serial does not fit the ICCID")
    return body + luhn.calc_check_digit(body)


def is_valid_iccid(iccid: str) -> bool:
    return iccid.isdigit() and len(iccid) in (19, 20) and iccid.startswith("89") and luhn.is_valid(iccid)


def activation_code(smdp_address: str, matching_id: str) -> str:
    """The string an eSIM-capable phone scans: LPA:1$<SM-DP+ address>$<matching id>."""
    return f"LPA:1${smdp_address}${matching_id}"


def reissue_serial(prefix: str, issue: int, length: int = 19) -> int:
    """The serial of a replacement profile's ICCID: `issue` (a positive counter) above every
    serial a first profile takes (a line id), so the two series can never meet."""
    body_length = length - 1 - len(prefix)
    offset = 10 ** (body_length - 1)
    if issue <= 0 or offset + issue >= 10**body_length:
        raise ValueError("no room for another ICCID")
    return offset + issue
