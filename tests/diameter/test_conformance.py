"""RFC 6733 / RFC 4006 conformance of what the Gy server sends, read byte for byte as it came: the
M bit of every AVP, the E bit and the mandatory AVPs of error answers, Failed-AVP (§7.5), 5001 for
an unknown M-bit AVP, 5005 for a missing one, 5004 with the AVP copied, CEA's identity, and a
port in use."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from diameter.message import Avp, constants
from fastapi.testclient import TestClient

from duckline.diameter import codec
from duckline.diameter.server import GyServer
from duckline.runtime import Runtime
from tests.diameter.conftest import PGW, VENDOR_ID
from tests.diameter.wire import INITIAL, UPDATE, RawPeer, adding, failed_avps, raw_avp, value_of, without
from tests.usage.test_usage import active_line

MB = 1_000_000
RESULT = constants.AVP_RESULT_CODE
# RFC 6733 §4.5 and RFC 4006 §8: every AVP we send carries the M bit but these (MUST NOT).
MUST_NOT_M = {
    constants.AVP_PRODUCT_NAME,
    constants.AVP_ERROR_MESSAGE,
    constants.AVP_ERROR_REPORTING_HOST,
    constants.AVP_FIRMWARE_REVISION,
}


def flags_as_required(avps: list[Any], answer_message: bool = False) -> list[str]:
    """What is wrong with the M bits of a tree of AVPs we sent (Failed-AVP's content is a copy); in
    an E-bit answer (`answer_message`) the AVPs §7.2 does not name go without it."""
    wrong = []
    for avp in avps:
        cleared = avp.code in MUST_NOT_M or (answer_message and avp.code not in codec.ANSWER_MESSAGE)
        if avp.is_mandatory == cleared:
            wrong.append(f"{avp.name or avp.code}: M={avp.is_mandatory}")
        if isinstance(avp.value, list) and avp.code != constants.AVP_FAILED_AVP:
            wrong += flags_as_required(avp.value)
    return wrong


def test_every_avp_we_send_has_the_m_bit_the_rfcs_require(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    msisdn = active_line(client, runtime)["line"]["msisdn"]
    peer = connect(PGW, cer=False)
    cea = peer.cer()
    granted = peer.ask(peer.ccr("m;1", 0, INITIAL, msisdn, asked=MB))
    unknown_number = peer.ask(peer.ccr("m;2", 0, INITIAL, "+85259999999", asked=MB))
    wrong_realm = peer.ask(peer.ccr("m;3", 0, INITIAL, msisdn, asked=MB, destination_realm="elsewhere.test"))
    dwa = peer.dwr()
    assert [value_of(m, RESULT) for m in (cea, granted, unknown_number, wrong_realm, dwa)] == [
        2001,
        2001,
        5030,
        3003,
        2001,
    ]
    for answer in (cea, granted, unknown_number, wrong_realm, dwa):
        assert flags_as_required(answer.avps, answer.header.is_error) == [], answer.message.name
    origin = granted.first(constants.AVP_ORIGIN_HOST), granted.first(constants.AVP_ORIGIN_REALM)
    assert all(avp is not None and avp.is_mandatory for avp in origin)
    assert granted.first(constants.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL) is not None


def test_protocol_errors_carry_the_e_bit_and_the_echoes_without_the_m_bit(
    connect: Callable[..., RawPeer],
) -> None:
    peer = connect(PGW)
    realm = peer.ask(peer.ccr("e;1", 3, UPDATE, used=5, destination_realm="elsewhere.test"))
    assert value_of(realm, RESULT) == 3003 and realm.message.header.is_error
    assert value_of(realm, constants.AVP_SESSION_ID) == "e;1"
    assert value_of(realm, constants.AVP_ORIGIN_HOST) == b"ocs.duckline.example"
    # CC-Request-Type and -Number echoed (clients match answers by them), but without the M bit
    # outside answer-message's grammar: a strict decoder (OTP's diameter) rejects an M-bit AVP there.
    assert (value_of(realm, constants.AVP_CC_REQUEST_TYPE), value_of(realm, constants.AVP_CC_REQUEST_NUMBER)) == (
        UPDATE,
        3,
    )
    assert value_of(realm, constants.AVP_AUTH_APPLICATION_ID) == 4
    beyond = [avp for avp in realm.avps if avp.code not in codec.ANSWER_MESSAGE]
    assert beyond and not any(avp.is_mandatory for avp in beyond)

    gx = peer.ccr("e;2", 0, UPDATE, used=5)
    gx.header.application_id = 16777238  # Gx: not ours
    unsupported = peer.ask(gx)
    assert value_of(unsupported, RESULT) == 3007 and unsupported.message.header.is_error

    asr = peer.ccr("e;3", 0, UPDATE, used=5)
    asr.header.command_code = 274  # Abort-Session: ours to send, not to receive
    command = peer.ask(asr)
    assert value_of(command, RESULT) == 3001 and command.message.header.is_error

    not_protocol = peer.ask(without(peer.ccr("e;4", 0, UPDATE, used=5), constants.AVP_AUTH_APPLICATION_ID))
    assert value_of(not_protocol, RESULT) == 5005 and not not_protocol.message.header.is_error
    served = peer.ask(peer.ccr("e;5", 1, UPDATE, used=5))
    assert value_of(served, RESULT) == 5002 and not served.message.header.is_error
    # A 5xxx answer is a CCA: it holds what a CCA must.
    assert [value_of(cca, constants.AVP_CC_REQUEST_TYPE) for cca in (not_protocol, served)] == [UPDATE, UPDATE]
    assert value_of(served, constants.AVP_CC_REQUEST_NUMBER) == 1
    assert value_of(served, constants.AVP_AUTH_APPLICATION_ID) == 4


def test_a_missing_avp_gets_5005_and_a_zero_filled_one_of_minimum_size(connect: Callable[..., RawPeer]) -> None:
    peer = connect(PGW)
    for code, payload in (
        (constants.AVP_AUTH_APPLICATION_ID, bytes(4)),  # Unsigned32
        (constants.AVP_CC_REQUEST_NUMBER, bytes(4)),
        (constants.AVP_SERVICE_CONTEXT_ID, b""),  # UTF8String
        (constants.AVP_SESSION_ID, b""),
    ):
        answer = peer.ask(without(peer.ccr("z;1", 1, UPDATE, used=5), code))
        assert value_of(answer, RESULT) == 5005, code
        [quoted] = failed_avps(answer)
        assert (quoted.code, quoted.vendor_id, quoted.payload) == (code, 0, payload)

    no_subscriber = peer.ask(peer.ccr("z;2", 0, INITIAL, asked=MB))
    assert value_of(no_subscriber, RESULT) == 5005
    [quoted] = failed_avps(no_subscriber)
    assert (quoted.code, quoted.payload) == (constants.AVP_SUBSCRIPTION_ID, b"")  # Grouped: empty
    assert value_of(no_subscriber, constants.AVP_CC_REQUEST_TYPE) == INITIAL


def test_an_unknown_avp_with_the_m_bit_gets_5001_and_a_copy(connect: Callable[..., RawPeer]) -> None:
    peer = connect(PGW)
    for unknown in (
        raw_avp(999_999, b"\x01\x02\x03", mandatory=True),
        raw_avp(999_999, b"\xff" * 8, mandatory=True, vendor=constants.VENDOR_TGPP),
    ):
        answer = peer.ask(adding(peer.ccr("u;1", 1, UPDATE, used=5), unknown))
        assert value_of(answer, RESULT) == 5001 and not answer.message.header.is_error
        [quoted] = failed_avps(answer)
        assert quoted.as_bytes() == unknown.as_bytes()  # flags, vendor, payload as sent

    # Without the M bit it may be ignored: the request is served.
    optional = peer.ask(adding(peer.ccr("u;2", 1, UPDATE, used=5), raw_avp(999_999, b"x", mandatory=False)))
    assert value_of(optional, RESULT) == 5002


def test_a_bad_value_gets_5004_with_the_avp_copied(connect: Callable[..., RawPeer]) -> None:
    peer = connect(PGW)
    gx = peer.ccr("v;1", 0, INITIAL, "+85251700000", asked=MB)
    gx.auth_application_id = 16777238
    answer = peer.ask(gx)
    assert value_of(answer, RESULT) == 5004
    [quoted] = failed_avps(answer)
    assert quoted.as_bytes() == Avp.new(constants.AVP_AUTH_APPLICATION_ID, value=16777238).as_bytes()

    odd_type = peer.ccr("v;2", 0, INITIAL, "+85251700000", asked=MB)
    odd_type.cc_request_type = 9
    answer = peer.ask(odd_type)
    [quoted] = failed_avps(answer)
    assert value_of(answer, RESULT) == 5004 and (quoted.code, quoted.value) == (constants.AVP_CC_REQUEST_TYPE, 9)
    assert value_of(answer, constants.AVP_CC_REQUEST_TYPE) == 9  # echoed as it came

    # Inside a grouped AVP: the group, holding the offending AVP alone (§7.5).
    letters = peer.ccr("v;3", 0, INITIAL, "852abc", asked=MB)
    answer = peer.ask(letters)
    assert value_of(answer, RESULT) == 5004
    [group] = failed_avps(answer)
    assert group.code == constants.AVP_SUBSCRIPTION_ID
    assert [(a.code, a.value) for a in group.value] == [(constants.AVP_SUBSCRIPTION_ID_DATA, "852abc")]


def test_cea_says_who_we_are_and_refuses_what_it_must(gy: GyServer, connect: Callable[..., RawPeer]) -> None:
    peer = connect(PGW, cer=False)
    cea = peer.cer()
    assert value_of(cea, RESULT) == 2001 and not cea.message.header.is_error
    assert value_of(cea, constants.AVP_PRODUCT_NAME) == "Duckline"
    assert value_of(cea, constants.AVP_VENDOR_ID) == VENDOR_ID
    assert value_of(cea, constants.AVP_HOST_IP_ADDRESS) == (1, "127.0.0.1")
    assert value_of(cea, constants.AVP_AUTH_APPLICATION_ID) == 4
    assert value_of(cea, constants.AVP_SUPPORTED_VENDOR_ID) == constants.VENDOR_TGPP
    state = value_of(cea, constants.AVP_ORIGIN_STATE_ID)
    assert state and value_of(peer.dwr(), constants.AVP_ORIGIN_STATE_ID) == state

    stranger = connect("pgw9.elsewhere.test", cer=False)
    refused = stranger.cer()
    assert value_of(refused, RESULT) == 3010 and refused.message.header.is_error
    assert stranger.is_closed()

    def only_gx(cer: Any) -> None:
        cer.auth_application_id = [16777238]

    gx = connect(PGW, cer=False)
    assert value_of(gx.cer(only_gx), RESULT) == 5010 and gx.is_closed()

    def tls_only(cer: Any) -> None:
        cer.inband_security_id = [1]

    tls = connect(PGW, cer=False)
    assert value_of(tls.cer(tls_only), RESULT) == 5017 and tls.is_closed()

    def anonymous(cer: Any) -> None:
        cer.product_name = None

    nameless = connect(PGW, cer=False)
    answer = nameless.cer(anonymous)
    assert value_of(answer, RESULT) == 5005 and nameless.is_closed()
    [quoted] = failed_avps(answer)
    assert (quoted.code, quoted.payload) == (constants.AVP_PRODUCT_NAME, b"")


def test_a_port_in_use_is_a_clear_error_and_a_non_zero_exit(tmp_path: Path, sqlite_template: Path) -> None:
    database = tmp_path / "ocs.db"
    shutil.copy(sqlite_template, database)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "DUCKLINE_DATABASE_URL": f"sqlite:///{database}", "DUCKLINE_LOG_DIR": str(tmp_path)}
        done = subprocess.run(  # noqa: S603 (our own command line)
            [sys.executable, "-m", "duckline.cli", "ocs", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stdout
    assert "in use" in done.stdout


def test_the_encoder_sets_m_bits_even_where_the_library_clears_them() -> None:
    from diameter.message.commands import CreditControlAnswer

    cca = CreditControlAnswer()
    cca.session_id, cca.result_code = "x", 2001
    cca.origin_host, cca.origin_realm = b"ocs", b"realm"
    assert not next(a for a in cca.avps if a.code == constants.AVP_ORIGIN_HOST).is_mandatory  # the library's
    sent = codec.decode(codec.encode(cca))
    assert flags_as_required(sent.avps) == []


@pytest.mark.parametrize("length", [0, 19, 22, 1 << 21])
def test_a_length_that_no_message_can_have_is_garbage(length: int) -> None:
    with pytest.raises(codec.Garbage):
        codec.message_length(bytes([1]) + length.to_bytes(3, "big"))
