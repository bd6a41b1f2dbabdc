"""The Gy server as freeDiameter sees it: a packet gateway built on freeDiameter's core and its RFC
4006 dictionary (tests/diameter/freediameter/gy_client.c, compiled here) does the capabilities
exchange and a two-service session. freeDiameter parses every answer against its dictionary's
rules and drops one that breaks them, reporting it through a hook: the client prints that, and
the test fails. .ci/run installs freeDiameter; where it is missing locally the test is skipped and
says how to get it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from duckline.diameter.server import GyServer
from duckline.runtime import Runtime
from tests.diameter.conftest import PGW, status_of
from tests.diameter.test_erlang import data_left
from tests.diameter.wire import INITIAL, TERMINATE, UPDATE
from tests.usage.test_usage import active_line

SOURCE = Path(__file__).parent / "freediameter" / "gy_client.c"
EXTENSIONS = Path("/usr/lib/freeDiameter")
DICTIONARY = EXTENSIONS / "dict_dcca.fdx"  # RFC 4006's, which builds on RFC 4005's (dict_nasreq)
MB = 1_000_000


def free_diameter_missing() -> str | None:
    if not Path("/usr/include/freeDiameter/libfdcore.h").is_file():
        return "freeDiameter's headers are not installed (apt-get install libfreediameter-dev; .ci/run does)"
    if not DICTIONARY.is_file():
        return "freeDiameter's RFC 4006 dictionary is not installed (apt-get install freediameter; .ci/run does)"
    if shutil.which("cc") is None:
        return "no C compiler (apt-get install gcc)"
    return None


@pytest.fixture
def free_diameter_client(tmp_path: Path) -> Path:
    """The client, compiled for this test."""
    if reason := free_diameter_missing():
        print(f"skipped: {reason}")
        pytest.skip(reason)
    binary = tmp_path / "gy_client"
    built = subprocess.run(  # noqa: S603
        [shutil.which("cc") or "cc", "-Wall", "-o", str(binary), str(SOURCE), "-lfdcore", "-lfdproto"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def configuration(tmp_path: Path, server: str, realm: str, port: int) -> Path:
    """freeDiameter's configuration: our gateway's identity, the server as its one peer over TCP
    without TLS. freeDiameter wants a certificate all the same: a self-signed one is made."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(  # noqa: S603
        [
            shutil.which("openssl") or "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={PGW}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    # The server as next hop for every request, whatever its Destination-Realm, as a gateway
    # has its OCS configured (so a request for another realm reaches it, to be refused).
    routes = tmp_path / "rt_default.conf"
    routes.write_text(f'* : "{server}" += DEFAULT ;\n')
    conf = tmp_path / "freeDiameter.conf"
    conf.write_text(
        f"""Identity = "{PGW}";
Realm = "operator.test";
Port = {free_port()};
SecPort = {free_port()};
ListenOn = "127.0.0.1";
No_SCTP;
No_IPv6;
NoRelay;
TLS_Cred = "{cert}", "{key}";
TLS_CA = "{cert}";
LoadExtension = "{EXTENSIONS / "dict_nasreq.fdx"}";
LoadExtension = "{DICTIONARY}";
LoadExtension = "{EXTENSIONS / "rt_default.fdx"}" : "{routes}";
ConnectPeer = "{server}" {{ ConnectTo = "127.0.0.1"; Port = {port}; No_TLS; No_SCTP; Realm = "{realm}"; }};
"""
    )
    return conf


def run_free_diameter(binary: Path, conf: Path, server: str, msisdn: str, *requests: str) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 (our own client, which ends itself within 60 s)
        [str(binary), str(conf), server, msisdn, *requests],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["label"] == "error"]
    assert done.returncode == 0 and not errors, done.stdout + done.stderr
    return {line["label"]: line for line in lines}


def test_free_diameter_runs_a_two_service_session_and_parses_every_answer(
    free_diameter_client: Path, tmp_path: Path, client: TestClient, runtime: Runtime, gy: GyServer
) -> None:
    subscriber = active_line(client, runtime)
    line_id, msisdn = subscriber["line"]["id"], subscriber["line"]["msisdn"].removeprefix("+")
    server, realm = runtime.settings.diameter_origin_host, runtime.settings.diameter_realm
    before = data_left(runtime, line_id)
    conf = configuration(tmp_path, server, realm, gy.port)

    answers = run_free_diameter(
        free_diameter_client,
        conf,
        server,
        msisdn,
        f"opened:{INITIAL}:0:{realm}:10/{MB}/-,11/{MB}/-",
        f"updated:{UPDATE}:1:{realm}:10/{MB}/300000,11/{MB}/200000",
        f"elsewhere:{UPDATE}:2:elsewhere.test:10/{MB}/5,11/{MB}/5",
        f"closed:{TERMINATE}:2:{realm}:10/-/50000,11/-/70000",
    )
    for label, answer in answers.items():
        print(f"freeDiameter parsed {label}: {json.dumps(answer)}")

    assert (answers["cea"]["command"], answers["cea"]["result"]) == (257, 2001)
    validity = runtime.settings.quota_validity_seconds
    for label, kind, number in [("opened", INITIAL, 0), ("updated", UPDATE, 1)]:
        answer = answers[label]
        assert (answer["command"], answer["result"], answer["e"]) == (272, 2001, False)
        assert (answer["type"], answer["number"]) == (kind, number)
        assert answer["mscc"] == [
            {"rating_group": 10, "result": 2001, "granted": MB, "validity": validity},
            {"rating_group": 11, "result": 2001, "granted": MB, "validity": validity},
        ]
    elsewhere = answers["elsewhere"]
    # CC-Request-Type echoed (without the M bit, outside answer-message's grammar).
    assert (elsewhere["result"], elsewhere["e"], elsewhere["type"], elsewhere["mscc"]) == (3003, True, 2, [])
    closed = answers["closed"]
    assert (closed["result"], closed["e"], closed["type"], closed["number"]) == (2001, False, TERMINATE, 2)
    assert [(m["rating_group"], m["result"]) for m in closed["mscc"]] == [(10, 2001), (11, 2001)]

    assert data_left(runtime, line_id) == before - 300_000 - 200_000 - 50_000 - 70_000
    assert status_of(gy, PGW).answers == {2001: 3, 3003: 1}
