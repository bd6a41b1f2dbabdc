"""The Gy server as stacks we did not write see it: node-diameter (the npm `diameter` package) as a
packet gateway over TCP, and Wireshark's dissector (tshark) reading a captured exchange. Both are
installed by .ci/run; where one is missing locally its test is skipped and says how to get it."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from diameter.message import constants
from fastapi.testclient import TestClient

from duckline.diameter.codec import ANSWER_MESSAGE
from duckline.diameter.server import GyServer
from duckline.runtime import Runtime
from tests.diameter.conftest import PGW, PGW2, VENDOR_ID, status_of
from tests.diameter.test_conformance import MUST_NOT_M
from tests.diameter.wire import INITIAL, UPDATE, RawPeer, adding, raw_avp, tshark_packets, value_of
from tests.usage.test_usage import active_line, remaining

NODE_CLIENT = Path(__file__).parent / "node" / "gy-client.js"
MB = 1_000_000


def node_diameter_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm; .ci/run does)"
    if not (NODE_CLIENT.parent / "node_modules" / "diameter").is_dir():
        return "the npm diameter package is not installed (cd tests/diameter/node && npm ci; .ci/run does)"
    return None


def test_node_diameter_as_a_packet_gateway(client: TestClient, runtime: Runtime, gy: GyServer) -> None:
    if reason := node_diameter_missing():
        pytest.skip(reason)
    subscriber = active_line(client, runtime)
    before = remaining(client, subscriber)[("data_bytes", "HK")]
    requests = [
        {"label": "opened", "type": INITIAL, "number": 0, "asked": MB},
        {"label": "elsewhere", "type": UPDATE, "number": 1, "used": 5, "realm": "elsewhere.test"},
        {"label": "closed", "type": 3, "number": 1, "used": 400_000},
    ]
    done = subprocess.run(  # noqa: S603 (our own script)
        [
            shutil.which("node") or "node",
            str(NODE_CLIENT),
            str(gy.port),
            PGW2,
            subscriber["line"]["msisdn"].removeprefix("+"),
            json.dumps(requests),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    answers = {line["label"]: line for line in map(json.loads, done.stdout.splitlines())}

    def avps(label: str) -> dict[str, Any]:
        return dict(answers[label]["body"])

    assert avps("cea")["Result-Code"] == "DIAMETER_SUCCESS"
    assert (avps("cea")["Product-Name"], avps("cea")["Vendor-Id"]) == ("Duckline", VENDOR_ID)
    assert avps("cea")["Origin-State-Id"] > 0

    opened = avps("opened")
    assert opened["Result-Code"] == "DIAMETER_SUCCESS" and not answers["opened"]["flags"]["error"]
    mscc = dict(opened["Multiple-Services-Credit-Control"])
    assert (mscc["Result-Code"], mscc["Rating-Group"]) == ("DIAMETER_SUCCESS", 10)
    octets = dict(mscc["Granted-Service-Unit"])["CC-Total-Octets"]  # Unsigned64: a Long's two halves
    assert (octets["high"] << 32) + octets["low"] == MB

    elsewhere = avps("elsewhere")
    assert elsewhere["Result-Code"] == "DIAMETER_REALM_NOT_SERVED" and answers["elsewhere"]["flags"]["error"]
    assert (elsewhere["CC-Request-Type"], elsewhere["CC-Request-Number"]) == ("UPDATE_REQUEST", 1)

    assert avps("closed")["Result-Code"] == "DIAMETER_SUCCESS"
    assert remaining(client, subscriber)[("data_bytes", "HK")] == before - 400_000
    assert status_of(gy, PGW2).answers == {2001: 2, 3003: 1}


def pdml_avps(element: ElementTree.Element, path: str = "field[@name='diameter.avp']") -> list[dict[str, Any]]:
    """The AVPs directly under a PDML element, each with its code, M bit and own AVPs (a grouped
    AVP's are in a field named after it)."""
    found = []
    for field in element.findall(path):
        code = field.find("field[@name='diameter.avp.code']")
        mandatory = field.find("field[@name='diameter.avp.flags']/field[@name='diameter.flags.mandatory']")
        assert code is not None and mandatory is not None
        children = pdml_avps(field, "field/field[@name='diameter.avp']")
        found.append({"code": int(code.get("show", "0")), "m": mandatory.get("show") == "1", "avps": children})
    return found


def test_tshark_sees_the_flags_we_meant(
    tmp_path: Path, client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer], gy: GyServer
) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark; .ci/run does)")
    msisdn = active_line(client, runtime)["line"]["msisdn"]
    peer = connect(PGW, cer=False)
    assert value_of(peer.cer(), constants.AVP_RESULT_CODE) == 2001
    assert value_of(peer.ask(peer.ccr("ts;1", 0, INITIAL, msisdn, asked=MB)), constants.AVP_RESULT_CODE) == 2001
    peer.ask(peer.ccr("ts;1", 1, UPDATE, used=5, destination_realm="elsewhere.test"))
    peer.ask(adding(peer.ccr("ts;2", 1, UPDATE, used=5), raw_avp(999_999, b"\x01", mandatory=True)))
    peer.dwr()
    capture = tmp_path / "gy.pcap"
    packets = tshark_packets(peer, gy.port, capture)
    answers = []
    for packet in packets:
        diameter = packet.find("proto[@name='diameter']")
        assert diameter is not None
        flags = {
            f.get("name"): f.get("show")
            for f in diameter.iter("field")
            if f.get("name", "").startswith("diameter.flags.")
        }
        if flags["diameter.flags.request"] == "0":
            answers.append((flags["diameter.flags.error"] == "1", pdml_avps(diameter)))
    assert len(answers) == 5  # CEA, CCA 2001, CCA 3003, CCA 5001, DWA

    def wrong_m(avps: list[dict[str, Any]], error: bool) -> list[int]:
        # In an E-bit answer, what RFC 6733 §7.2's answer-message does not name goes without M.
        cleared = {a["code"] for a in avps if a["code"] in MUST_NOT_M or (error and a["code"] not in ANSWER_MESSAGE)}
        wrong = [a["code"] for a in avps if a["m"] == (a["code"] in cleared)]
        return wrong + [c for a in avps if a["code"] != constants.AVP_FAILED_AVP for c in wrong_m(a["avps"], False)]

    for error, avps in answers:
        assert wrong_m(avps, error) == [], avps
        assert {constants.AVP_ORIGIN_HOST, constants.AVP_ORIGIN_REALM} <= {a["code"] for a in avps}
    assert [error for error, _ in answers] == [False, False, True, False, False]  # only the 3003 has E
    granted = answers[1][1]
    [mscc] = [a for a in granted if a["code"] == constants.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL]
    gsu = next(a for a in mscc["avps"] if a["code"] == constants.AVP_GRANTED_SERVICE_UNIT)
    assert [a["code"] for a in gsu["avps"]] == [constants.AVP_CC_TOTAL_OCTETS]
    [failed] = [a for a in answers[3][1] if a["code"] == constants.AVP_FAILED_AVP]
    assert [(a["code"], a["m"]) for a in failed["avps"]] == [(999_999, True)]
