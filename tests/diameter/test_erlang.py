"""The Gy server as Erlang/OTP's diameter application sees it: a packet gateway built on OTP (the
script in tests/diameter/erlang/) does the capabilities exchange, a two-service session and a
request to a realm we do not serve, and prints each answer as OTP's strict decoder read it. Any
decode error OTP reports (an M bit, a Failed-AVP's shape, a grouped AVP) fails the test. .ci/run
installs OTP's diameter and its RFC 4006 dictionary; where they are missing locally the tests
are skipped and say how to get them. A capture on loopback of that gateway's two-service request
and our answer, read by tshark, shows both services answered each with its own Result-Code."""

from __future__ import annotations

import functools
import json
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.catalog.rules import Unit
from duckline.diameter.server import GyServer
from duckline.runtime import Runtime
from duckline.usage.models import Bucket
from tests.diameter.conftest import PGW, VENDOR_ID, status_of
from tests.diameter.wire import INITIAL, TERMINATE, UPDATE
from tests.usage.test_usage import active_line

OTP_CLIENT = Path(__file__).parent / "erlang" / "gy_client.escript"
MB = 1_000_000
Service = tuple[int, int | None, int | None]  # rating group, octets asked, octets used


@functools.cache
def otp_diameter_missing() -> str | None:
    """Why the OTP client cannot run here, or None."""
    if shutil.which("escript") is None:
        return "Erlang/OTP is not installed (apt-get install erlang-base erlang-diameter; .ci/run does)"
    found = subprocess.run(  # noqa: S603 (erl's own query)
        [
            shutil.which("erl") or "erl",
            "-noshell",
            "-eval",
            "io:put_chars(code:lib_dir(diameter)), halt().",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if found.returncode != 0 or found.stdout.startswith("{error"):
        return "OTP's diameter application is not installed (apt-get install erlang-diameter erlang-dev; .ci/run does)"
    if not (Path(found.stdout) / "examples" / "dict" / "rfc4006_cc.dia").is_file():
        return "OTP's RFC 4006 dictionary is not installed (apt-get install erlang-examples; .ci/run does)"
    if not (Path(found.stdout) / "include" / "diameter.hrl").is_file():
        return "OTP's diameter headers are not installed (apt-get install erlang-dev; .ci/run does)"
    return None


@pytest.fixture
def otp() -> None:
    if reason := otp_diameter_missing():
        print(f"skipped: {reason}")
        pytest.skip(reason)


def request(
    label: str,
    kind: int,
    number: int,
    *services: Service,
    realm: str = "duckline.example",
    subscriber: str | None = "",
) -> str:
    """One request in the script's notation: {Label, Type, Number, Realm, [{Group, Asked, Used}]},
    and the subscriber if not the script's (None: no Subscription-Id)."""

    def units(n: int | None) -> str:
        return "none" if n is None else str(n)

    blocks = ",".join(f"{{{group},{units(asked)},{units(used)}}}" for group, asked, used in services)
    other = "" if subscriber == "" else ",none" if subscriber is None else f',"{subscriber}"'
    return f'{{"{label}",{kind},{number},"{realm}",[{blocks}]{other}}}'


def run_otp_client(port: int, host: str, msisdn: str, *requests: str) -> dict[str, dict[str, Any]]:
    """The script's answers by label; every one of them decoded by OTP without an error."""
    done = subprocess.run(  # noqa: S603 (our own script)
        [shutil.which("escript") or "escript", str(OTP_CLIENT), str(port), host, msisdn, f"[{','.join(requests)}]"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    answers = {line["label"]: line for line in map(json.loads, done.stdout.splitlines())}
    for label, answer in answers.items():
        assert answer["errors"] == [], f"OTP's decoder reports errors in the {label} answer: {answer['errors']}"
    return answers


def data_left(runtime: Runtime, line_id: int) -> int:
    """What the line's data buckets hold, read from the database."""
    with runtime.unit_of_work() as uow:
        left = uow.session.scalar(
            select(func.sum(Bucket.remaining)).where(Bucket.line_id == line_id, Bucket.unit == Unit.DATA_BYTES)
        )
    return int(left or 0)


def test_otp_diameter_runs_a_two_service_session_and_decodes_every_answer_cleanly(
    otp: None, client: TestClient, runtime: Runtime, gy: GyServer
) -> None:
    subscriber = active_line(client, runtime)
    line_id, msisdn = subscriber["line"]["id"], subscriber["line"]["msisdn"].removeprefix("+")
    before = data_left(runtime, line_id)
    assert before >= 2 * MB
    used = {"updated": (300_000, 200_000), "closed": (50_000, 70_000)}

    answers = run_otp_client(
        gy.port,
        PGW,
        msisdn,
        request("opened", INITIAL, 0, (10, MB, None), (11, MB, None)),
        request("updated", UPDATE, 1, (10, MB, used["updated"][0]), (11, MB, used["updated"][1])),
        request("elsewhere", UPDATE, 2, (10, MB, 5), (11, MB, 5), realm="elsewhere.test"),
        request("closed", TERMINATE, 2, (10, None, used["closed"][0]), (11, None, used["closed"][1])),
    )
    for label, answer in answers.items():
        print(f"OTP decoded {label}: {json.dumps(answer)}")

    cea = answers["cea"]
    assert (cea["command"], cea["result"], cea["e"]) == ("CEA", 2001, False)
    realm = runtime.settings.diameter_realm
    assert (cea["product"], cea["vendor"], cea["origin_realm"]) == ("Duckline", VENDOR_ID, realm)
    assert 4 in cea["applications"]

    validity = runtime.settings.quota_validity_seconds
    granted = [
        {"rating_group": 10, "result": 2001, "granted": MB, "validity": validity},
        {"rating_group": 11, "result": 2001, "granted": MB, "validity": validity},
    ]
    for label, kind, number in [("opened", INITIAL, 0), ("updated", UPDATE, 1)]:
        answer = answers[label]
        assert (answer["command"], answer["result"], answer["e"]) == ("CCA", 2001, False), answer
        assert (answer["type"], answer["number"]) == (kind, number)
        assert answer["mscc"] == granted, answer

    elsewhere = answers["elsewhere"]
    # OTP reads an answer with the E bit as RFC 6733's answer-message, not as a CCA.
    assert (elsewhere["command"], elsewhere["result"], elsewhere["e"]) == ("answer-message", 3003, True), elsewhere

    closed = answers["closed"]
    assert (closed["result"], closed["e"], closed["type"], closed["number"]) == (2001, False, TERMINATE, 2)
    ended = [(m["rating_group"], m["result"], m["granted"]) for m in closed["mscc"]]
    assert ended == [(10, 2001, None), (11, 2001, None)]

    assert data_left(runtime, line_id) == before - sum(used["updated"]) - sum(used["closed"])
    assert status_of(gy, PGW).answers == {2001: 3, 3003: 1}


def test_otp_diameter_decodes_our_5xxx_answers_as_ccas_without_errors(
    otp: None, client: TestClient, runtime: Runtime, gy: GyServer
) -> None:
    """Errors that are not protocol errors come in a CCA (no E bit) that must still satisfy the CCA's
    grammar, and a Failed-AVP that must satisfy its own: OTP's decoder checks both."""
    msisdn = active_line(client, runtime)["line"]["msisdn"].removeprefix("+")
    answers = run_otp_client(
        gy.port,
        PGW,
        msisdn,
        request("no subscriber", INITIAL, 0, (10, MB, None), subscriber=None),
        request("unknown", INITIAL, 0, (10, MB, None), subscriber="85200000001"),
        request("one unrated", INITIAL, 0, (10, MB, None), (4242, MB, None)),
    )
    for label, answer in answers.items():
        print(f"OTP decoded {label}: {json.dumps(answer)}")
    missing = answers["no subscriber"]
    assert (missing["command"], missing["result"], missing["e"], missing["type"]) == ("CCA", 5005, False, INITIAL)
    assert len(missing["failed"]) == 1 and "Subscription-Id" in missing["failed"][0], missing["failed"]
    unknown = answers["unknown"]
    assert (unknown["command"], unknown["result"], unknown["e"]) == ("CCA", 5030, False)
    assert unknown["mscc"] == [{"rating_group": 10, "result": 5030, "granted": None, "validity": None}]
    unrated = answers["one unrated"]
    assert (unrated["command"], unrated["result"], unrated["e"]) == ("CCA", 2001, False)
    validity = runtime.settings.quota_validity_seconds
    assert unrated["mscc"] == [
        {"rating_group": 10, "result": 2001, "granted": MB, "validity": validity},
        {"rating_group": 4242, "result": 5031, "granted": None, "validity": None},
    ]


FLAG_R = "diameter.flags.request"
AVP_FIELDS = {
    "diameter.avp.code",
    "diameter.avp.flags",
    "diameter.avp.len",
    "diameter.avp.vendorId",
    "diameter.avp.pad",
}


@dataclass
class Avp:
    """An AVP as tshark decoded it: name, M and V bits, Vendor-ID, value (as tshark shows it) and,
    for a grouped AVP, its own AVPs."""

    name: str
    line: str  # tshark's one-line summary of it
    m: bool
    v: bool
    vendor: str | None
    value: str
    avps: list[Avp]


def avp_tree(element: ElementTree.Element, path: str = "field[@name='diameter.avp']") -> list[Avp]:
    found = []
    for field in element.findall(path):
        flags = {f.get("name"): f.get("show") == "1" for f in field.findall("field[@name='diameter.avp.flags']/field")}
        vendor = field.find("field[@name='diameter.avp.vendorId']")
        # The value's field (the dissector may add another for the same bytes, e.g. VendorId).
        value = next(f for f in field.findall("field") if f.get("name") not in AVP_FIELDS)
        code = field.find("field[@name='diameter.avp.code']")
        assert code is not None
        found.append(
            Avp(
                name=code.get("showname", "").split()[-1],
                line=field.get("showname", ""),
                m=flags["diameter.flags.mandatory"],
                v=flags["diameter.flags.vendorspecific"],
                vendor=None if vendor is None else vendor.get("show"),
                value=value.get("show", ""),
                avps=avp_tree(value),
            )
        )
    return found


def walk(avps: list[Avp]) -> list[Avp]:
    return [x for a in avps for x in (a, *walk(a.avps))]


def outline(avps: list[Avp], depth: int = 1) -> list[str]:
    return [line for a in avps for line in ("  " * depth + a.line, *outline(a.avps, depth + 1))]


class LoopbackCapture:
    """tshark capturing the server's port on the loopback interface, as it happens."""

    def __init__(self, port: int, path: Path) -> None:
        self.port, self.path = port, path
        self.log = path.with_suffix(".log")
        with self.log.open("w") as log:
            self.process = subprocess.Popen(  # noqa: S603
                [shutil.which("tshark") or "tshark", "-i", "lo", "-f", f"tcp port {port}", "-w", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while "Capturing on" not in self.log.read_text():
            assert self.process.poll() is None, f"tshark could not capture on lo: {self.log.read_text()}"
            assert time.monotonic() < deadline, "tshark did not start capturing within 30 s"
            time.sleep(0.05)

    def stop(self) -> None:
        time.sleep(0.5)  # the last segments reach the capture
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)

    def tshark(self, *options: str) -> str:
        decoded = subprocess.run(  # noqa: S603
            [
                shutil.which("tshark") or "tshark",
                "-r",
                str(self.path),
                "-d",
                f"tcp.port=={self.port},diameter",
                *options,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert decoded.returncode == 0, decoded.stderr
        return decoded.stdout


def test_tshark_reads_otp_s_two_mscc_request_and_our_answer_captured_on_loopback(
    otp: None, tmp_path: Path, client: TestClient, runtime: Runtime, gy: GyServer
) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark; .ci/run does)")
    msisdn = active_line(client, runtime)["line"]["msisdn"].removeprefix("+")
    capture = LoopbackCapture(gy.port, tmp_path / "otp-gy.pcapng")
    try:
        run_otp_client(gy.port, PGW, msisdn, request("opened", INITIAL, 0, (10, MB, None), (11, MB, None)))
    finally:
        capture.stop()
    print(f"tshark, the exchange captured on lo:\n{capture.tshark('-Y', 'diameter')}")
    root = ElementTree.fromstring(capture.tshark("-T", "pdml"))  # noqa: S314 (tshark's output)
    assert not root.findall(".//proto[@name='_ws.malformed']"), "tshark: malformed"
    messages = {}
    for packet in root.findall("packet"):
        for diameter in packet.findall("proto[@name='diameter']"):
            code, request_bit = (diameter.find(f".//field[@name='{f}']") for f in ("diameter.cmd.code", FLAG_R))
            assert code is not None and request_bit is not None
            messages[(int(code.get("show", "0")), request_bit.get("show") == "1")] = avp_tree(diameter)
    cer, cea, ccr, cca = (messages[key] for key in [(257, True), (257, False), (272, True), (272, False)])
    for title, avps in (("our CEA", cea), ("OTP's CCR", ccr), ("our CCA", cca)):
        print(f"tshark, {title}:\n" + "\n".join(outline(avps)))

    def mscc(avps: list[Avp]) -> list[dict[str, Any]]:
        """Each MSCC's Rating-Group, Result-Code and requested/granted octets."""
        found = []
        for block in (a for a in avps if a.name == "Multiple-Services-Credit-Control"):
            inner = {a.name: a for a in block.avps}
            units = {
                name: int(next(a.value for a in inner[name].avps if a.name == "CC-Total-Octets"))
                for name in ("Requested-Service-Unit", "Granted-Service-Unit")
                if name in inner
            }
            found.append(
                {
                    "rg": int(inner["Rating-Group"].value),
                    "rc": int(inner["Result-Code"].value) if "Result-Code" in inner else None,
                    **units,
                }
            )
        return found

    assert mscc(ccr) == [
        {"rg": 10, "rc": None, "Requested-Service-Unit": MB},
        {"rg": 11, "rc": None, "Requested-Service-Unit": MB},
    ]
    assert mscc(cca) == [
        {"rg": 10, "rc": 2001, "Granted-Service-Unit": MB},
        {"rg": 11, "rc": 2001, "Granted-Service-Unit": MB},
    ]
    for answer in (cea, cca):
        top = {a.name: a for a in answer}
        assert top["Result-Code"].value == "2001"
        assert top["Origin-Host"].m and top["Origin-Realm"].m
        assert top["Origin-Host"].value == "ocs.duckline.example"
        # Only IETF AVPs: no V bit, no Vendor-ID field, anywhere in the tree.
        assert [(a.name, a.vendor) for a in walk(answer) if a.v or a.vendor is not None] == []
    assert {a.name: a.value for a in cea if a.name in ("Vendor-Id", "Auth-Application-Id")} == {
        "Vendor-Id": str(VENDOR_ID),
        "Auth-Application-Id": "4",
    }
    assert next(a.value for a in cer if a.name == "Vendor-Id") == "0"  # OTP's own, as configured
