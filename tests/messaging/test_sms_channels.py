"""The SMPP and HTTP gateway SMS channels against real peers on loopback.

SMPP: tests/smsc.py, an SMSC speaking SMPP 3.4 over TCP; the assertions are on what it received and
decoded on its own (GSM 03.38 table, UDH reassembly), not on what the channel meant to send.
HTTP: a gateway on http.server that checks the signature itself (not with the channel's helper).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import smpplib.consts as c
import smpplib.exceptions

from duckline.messaging.sms import PermanentFailure
from duckline.messaging.sms.http_gateway import HttpGatewaySmsChannel
from duckline.messaging.sms.smpp import SmppSmsChannel, SmppStatusError, split
from tests.smsc import Smsc

SYSTEM_ID = "duckline"
PASSWORD = "secret1"
TO = "+85291234567"
TO_DIGITS = "85291234567"

RENEWAL_HANT = "續期成功：您的月費計劃已續期，收據編號 R2026-000123，金額 HK$128.00。感謝您使用 Duckline！"
RENEWAL_HANS = "续期成功：您的月费计划已续期，收据编号 R2026-000123，金额 HK$128.00。感谢您使用 Duckline！"


def repeat_to(text: str, length: int) -> str:
    return (text * (length // len(text) + 1))[:length]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    with Smsc(system_id=SYSTEM_ID, password=PASSWORD) as server:
        yield server


def channel(smsc: Smsc, password: str = PASSWORD, **kwargs: Any) -> SmppSmsChannel:
    return SmppSmsChannel("127.0.0.1", smsc.port, SYSTEM_ID, password, "Duckline", timeout=5.0, **kwargs)


# -- SMPP --


def test_short_english_sms_arrives_as_one_gsm_part(smsc: Smsc) -> None:
    reference = channel(smsc).send(TO, "Hello @ 5!")

    (part,) = smsc.submissions
    assert reference == part.message_id
    assert part.data_coding == c.SMPP_ENCODING_DEFAULT
    assert part.esm_class == 0 and part.concatenation is None
    assert part.short_message == bytes([0x48, 0x65, 0x6C, 0x6C, 0x6F, 0x20, 0x00, 0x20, 0x35, 0x21])  # @ is 0x00
    assert smsc.messages() == ["Hello @ 5!"]
    assert (part.destination_addr, part.dest_addr_ton, part.dest_addr_npi) == (TO_DIGITS, c.SMPP_TON_INTL, 1)
    assert (part.source_addr, part.source_addr_ton, part.source_addr_npi) == ("Duckline", c.SMPP_TON_ALNUM, 0)
    assert part.registered_delivery == 0
    assert smsc.binds == [("bind_transmitter", SYSTEM_ID, c.SMPP_ESME_ROK)]
    assert smsc.unbinds == 1


@pytest.mark.parametrize("template", [RENEWAL_HANT, RENEWAL_HANS], ids=["zh-Hant", "zh-Hans"])
def test_200_chinese_characters_arrive_as_ucs2_parts_and_reassemble(smsc: Smsc, template: str) -> None:
    body = repeat_to(template, 200)
    assert len(body) == 200

    reference = channel(smsc).send(TO, body)

    parts = smsc.submissions
    assert len(parts) == math.ceil(200 / 67) == 3
    assert reference.split(",") == [p.message_id for p in parts]
    assert {p.data_coding for p in parts} == {c.SMPP_ENCODING_ISO10646}
    assert all(p.esm_class & c.SMPP_GSMFEAT_UDHI for p in parts)
    assert [len(p.text) for p in parts] == [67, 67, 66]
    concatenations = [p.concatenation for p in parts]
    assert [(k.total, k.number) for k in concatenations if k] == [(3, 1), (3, 2), (3, 3)]
    assert len({k.reference for k in concatenations if k}) == 1
    assert smsc.messages(TO_DIGITS) == [body]


def test_a_short_chinese_sms_is_one_ucs2_part(smsc: Smsc) -> None:
    channel(smsc).send(TO, RENEWAL_HANT[:70])

    (part,) = smsc.submissions
    assert part.data_coding == c.SMPP_ENCODING_ISO10646 and part.esm_class == 0
    assert smsc.messages() == [RENEWAL_HANT[:70]]


def test_long_english_sms_arrives_as_gsm_parts_of_153(smsc: Smsc) -> None:
    body = repeat_to("Your plan renews on 24 Dec for HK$128.00. Reply STOP to opt out. ", 320)

    channel(smsc).send(TO, body)

    assert [len(p.payload) for p in smsc.submissions] == [153, 153, 14]
    assert {p.data_coding for p in smsc.submissions} == {c.SMPP_ENCODING_DEFAULT}
    assert smsc.messages() == [body]


def test_no_part_ends_inside_a_gsm_escape_pair(smsc: Smsc) -> None:
    body = "a" * 152 + "€ then [brackets] {braces}"  # € (ESC 0x65) would straddle octets 153/154

    channel(smsc).send(TO, body)

    parts = smsc.submissions
    assert {p.data_coding for p in parts} == {c.SMPP_ENCODING_DEFAULT}
    assert [p.text for p in parts] == ["a" * 152, "€ then [brackets] {braces}"]  # each part decodes alone
    assert smsc.messages() == [body]


def test_no_part_ends_inside_a_surrogate_pair(smsc: Smsc) -> None:
    body = "請到" * 33 + "𨋢" + "大堂等候。" * 4  # an HKSCS character in CJK Extension B at the 67th code unit

    channel(smsc).send(TO, body)

    parts = smsc.submissions
    assert [p.text for p in parts] == ["請到" * 33, "𨋢" + "大堂等候。" * 4]
    assert smsc.messages() == [body]


def test_a_backtick_goes_out_as_ucs2(smsc: Smsc) -> None:
    # smpplib's GSM table maps ` to 0x5F, which is § in GSM 03.38: the channel does not let it.
    channel(smsc).send(TO, "use `code`")

    assert smsc.messages() == ["use `code`"]
    assert smsc.submissions[0].data_coding == c.SMPP_ENCODING_ISO10646


def test_every_character_of_the_gsm_alphabet_arrives_as_sent(smsc: Smsc) -> None:
    body = "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ¿äöñüà^{}\\[~]|€"

    channel(smsc).send(TO, body)

    assert smsc.submissions[0].data_coding == c.SMPP_ENCODING_DEFAULT
    assert smsc.messages() == [body]


def test_registered_delivery_can_be_asked_for(smsc: Smsc) -> None:
    channel(smsc, registered_delivery=True).send(TO, "hi")

    assert smsc.submissions[0].registered_delivery == 1


def test_wrong_password_fails_the_bind_and_is_retried(smsc: Smsc) -> None:
    with pytest.raises(smpplib.exceptions.PDUError) as raised:
        channel(smsc, password="wrong").send(TO, "hello")

    assert not isinstance(raised.value, PermanentFailure)
    assert raised.value.args[1] == c.SMPP_ESME_RBINDFAIL
    assert smsc.binds == [("bind_transmitter", SYSTEM_ID, c.SMPP_ESME_RBINDFAIL)]
    assert smsc.submissions == []


def test_a_destination_the_smsc_refuses_is_a_permanent_failure(smsc: Smsc) -> None:
    smsc.refuse(TO_DIGITS, c.SMPP_ESME_RINVDSTADR)

    with pytest.raises(PermanentFailure, match="0x0000000B"):
        channel(smsc).send(TO, repeat_to(RENEWAL_HANT, 200))

    assert len(smsc.submissions) == 1  # the other parts are not sent
    assert smsc.unbinds == 1


@pytest.mark.parametrize("status", [c.SMPP_ESME_RTHROTTLED, c.SMPP_ESME_RMSGQFUL, c.SMPP_ESME_RSYSERR])
def test_throttling_and_temporary_refusals_are_retried(smsc: Smsc, status: int) -> None:
    smsc.refuse(TO_DIGITS, status)

    with pytest.raises(SmppStatusError) as raised:
        channel(smsc).send(TO, "hello")

    assert not isinstance(raised.value, PermanentFailure)
    assert raised.value.status == status


def test_an_address_that_is_not_e164_fails_for_good_without_connecting(smsc: Smsc) -> None:
    for to in ("85291234567", "+852 9123 4567", "", "+0123456789"):
        with pytest.raises(PermanentFailure):
            channel(smsc).send(to, "hello")
    assert smsc.binds == []


def test_no_smsc_listening_is_retried() -> None:
    dead = SmppSmsChannel("127.0.0.1", free_port(), SYSTEM_ID, PASSWORD, "Duckline", timeout=2.0)

    with pytest.raises(smpplib.exceptions.ConnectionError) as raised:
        dead.send(TO, "hello")
    assert not isinstance(raised.value, PermanentFailure)


def test_an_smsc_that_never_answers_times_out_and_is_retried(smsc: Smsc) -> None:
    smsc.answer_submits = False
    started = time.monotonic()

    with pytest.raises(OSError) as raised:  # socket.timeout is TimeoutError
        SmppSmsChannel("127.0.0.1", smsc.port, SYSTEM_ID, PASSWORD, "Duckline", timeout=0.5).send(TO, "hello")

    assert not isinstance(raised.value, PermanentFailure)
    assert time.monotonic() - started < 5


def test_settings_smpplib_would_cut_are_refused() -> None:
    with pytest.raises(ValueError, match="password"):
        SmppSmsChannel("127.0.0.1", 2775, SYSTEM_ID, "ninechars", "Duckline")
    with pytest.raises(ValueError, match="source_addr"):
        SmppSmsChannel("127.0.0.1", 2775, SYSTEM_ID, PASSWORD, "Duckline Mobile HK")


def test_number_senders_get_their_ton() -> None:
    assert channel_source("+85260000000") == ("85260000000", c.SMPP_TON_INTL, c.SMPP_NPI_ISDN)
    assert channel_source("12345") == ("12345", c.SMPP_TON_UNK, c.SMPP_NPI_ISDN)


def channel_source(source: str) -> tuple[str, int, int]:
    ch = SmppSmsChannel("127.0.0.1", 2775, SYSTEM_ID, PASSWORD, source)
    return ch.source_addr, ch.source_addr_ton, ch.source_addr_npi


def test_empty_text_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentFailure):
        split("")


def test_the_same_message_sent_again_carries_the_same_references(smsc: Smsc) -> None:
    """A message sent again (its worker died before recording it) goes with the same user_message_reference
    and the same concatenation reference, so the SMSC and the handset can tell it is a repeat."""
    body = repeat_to(RENEWAL_HANT, 200)
    sender = channel(smsc)

    sender.send(TO, body, reference="dl-notification-17")
    sender.send(TO, body, reference="dl-notification-17")
    sender.send(TO, body, reference="dl-notification-18")

    first, again, other = smsc.submissions[0:3], smsc.submissions[3:6], smsc.submissions[6:9]
    assert {p.user_message_reference for p in first + again} == {first[0].user_message_reference}
    assert first[0].user_message_reference is not None
    assert other[0].user_message_reference != first[0].user_message_reference
    assert [p.short_message for p in again] == [p.short_message for p in first]  # UDH reference included
    assert smsc.messages(TO_DIGITS) == [body, body, body]


# -- HTTP gateway --

SECRET = "gw-secret-0123456789"


@dataclass
class Gateway:
    secret: str
    status: int = 200
    answer: Any = field(default_factory=lambda: {"id": "gw-000001"})
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)
    bad_signatures: int = 0
    url: str = ""


def signature_ok(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header, f"v1={expected}")


@contextmanager
def serve_gateway(secret: str = SECRET) -> Iterator[Gateway]:
    """An SMS gateway on loopback that checks the signature and keeps what it was sent."""
    state = Gateway(secret=secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            timestamp = self.headers.get("Duckline-Timestamp", "")
            signature = self.headers.get("Duckline-Signature", "")
            state.headers.append(dict(self.headers))
            state.raw_bodies.append(body)
            if not signature_ok(state.secret, timestamp, body, signature):
                state.bad_signatures += 1
                self._reply(401, {"error": "bad signature"})
                return
            state.received.append(json.loads(body.decode("utf-8")))
            self._reply(state.status, state.answer)

        def _reply(self, status: int, answer: Any) -> None:
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/sms"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with serve_gateway() as state:
        yield state


def gateway_channel(gateway: Gateway, secret: str = SECRET) -> HttpGatewaySmsChannel:
    return HttpGatewaySmsChannel(gateway.url, secret, "Duckline", timeout=5.0)


def test_gateway_gets_signed_json_and_its_id_is_returned(gateway: Gateway) -> None:
    body = repeat_to(RENEWAL_HANT, 200)

    reference = gateway_channel(gateway).send(TO, body)

    assert reference == "gw-000001"
    (message,) = gateway.received
    assert message == {"to": TO, "from": "Duckline", "text": body, "reference": message["reference"]}
    assert message["reference"].startswith("dl-")
    headers = gateway.headers[0]
    assert headers["Content-Type"].startswith("application/json")
    assert abs(int(headers["Duckline-Timestamp"]) - time.time()) < 60
    assert gateway.bad_signatures == 0


def test_the_same_message_sent_again_carries_the_same_reference(gateway: Gateway) -> None:
    sender = gateway_channel(gateway)

    sender.send(TO, "hello", reference="dl-notification-17")
    sender.send(TO, "hello", reference="dl-notification-17")

    assert [m["reference"] for m in gateway.received] == ["dl-notification-17", "dl-notification-17"]


def test_the_signature_verifies_with_the_secret_only(gateway: Gateway) -> None:
    gateway_channel(gateway).send(TO, "hello")

    body, headers = gateway.raw_bodies[0], gateway.headers[0]
    timestamp, signature = headers["Duckline-Timestamp"], headers["Duckline-Signature"]
    assert signature_ok(SECRET, timestamp, body, signature)
    assert not signature_ok("another-secret", timestamp, body, signature)
    assert not signature_ok(SECRET, str(int(timestamp) + 1), body, signature)
    assert not signature_ok(SECRET, timestamp, body.replace(b"hello", b"hellO"), signature)


def test_a_channel_with_another_secret_is_refused_by_the_gateway(gateway: Gateway) -> None:
    with pytest.raises(PermanentFailure, match="401"):
        gateway_channel(gateway, secret="another-secret").send(TO, "hello")
    assert gateway.bad_signatures == 1 and gateway.received == []


def test_without_an_id_in_the_answer_the_reference_is_returned(gateway: Gateway) -> None:
    gateway.status, gateway.answer = 202, b"queued"

    reference = gateway_channel(gateway).send(TO, "hello")

    assert reference == gateway.received[0]["reference"]


def test_400_is_a_permanent_failure(gateway: Gateway) -> None:
    gateway.status, gateway.answer = 400, {"error": "invalid number"}

    with pytest.raises(PermanentFailure, match="400"):
        gateway_channel(gateway).send(TO, "hello")


@pytest.mark.parametrize("status", [503, 500, 429, 408])
def test_5xx_408_and_429_are_retried(gateway: Gateway, status: int) -> None:
    gateway.status, gateway.answer = status, {"error": "try later"}

    with pytest.raises(httpx.HTTPStatusError) as raised:
        gateway_channel(gateway).send(TO, "hello")
    assert raised.value.response.status_code == status


def test_no_gateway_listening_is_retried() -> None:
    channel = HttpGatewaySmsChannel(f"http://127.0.0.1:{free_port()}/sms", SECRET, "Duckline", timeout=2.0)

    with pytest.raises(httpx.TransportError):
        channel.send(TO, "hello")


def test_a_supplied_client_is_used(gateway: Gateway) -> None:
    with httpx.Client() as client:
        assert HttpGatewaySmsChannel(gateway.url, SECRET, "Duckline", client=client).send(TO, "hi") == "gw-000001"


def test_missing_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        HttpGatewaySmsChannel("", SECRET, "Duckline")
    with pytest.raises(ValueError):
        HttpGatewaySmsChannel("http://127.0.0.1:1/sms", "", "Duckline")
