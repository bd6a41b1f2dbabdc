"""Duckline's Kamailio configuration against the real Kamailio 5.6 and SIPp, on loopback.

The database side (the view kamailio_subscriber) belongs to the SIP accounts; here a table of the
same shape in a throwaway PostgreSQL database stands in for it, with two accounts."""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from duckline.cli import app
from duckline.core.config import Settings
from duckline.sipserver.config import SipConfigError, kamailio_db_url, render
from tests.conftest import PG_SERVER, PG_SKIP_REASON, drop_in_background

SCENARIOS = Path(__file__).parent / "scenarios"
DOMAIN = "sip.duckline.example"
ALICE, ALICE_PASSWORD = "85291110001", "alice-secret-1"
BOB, BOB_PASSWORD = "85291110002", "bob-secret-2"
KAMAILIO = shutil.which("kamailio")
SIPP = shutil.which("sipp")


def _missing(*tools: tuple[str, str | None]) -> str | None:
    absent = [name for name, path in tools if path is None]
    return (
        f"not installed: {', '.join(absent)} (Debian: kamailio kamailio-postgres-modules sip-tester)"
        if absent
        else None
    )


def _need(*tools: tuple[str, str | None]) -> None:
    reason = _missing(*tools)
    if reason:
        print(reason)
        pytest.skip(reason)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 (SIP digest is MD5)


def _free_port() -> int:
    """A port free for both UDP and TCP on loopback (Kamailio listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port on loopback")


def test_db_url_is_kamailios_form() -> None:
    assert kamailio_db_url("postgresql+psycopg://duck:s3cret@db.internal:6432/duckline") == (
        "postgres://duck:s3cret@db.internal:6432/duckline"
    )
    assert kamailio_db_url("postgresql://postgres@127.0.0.1/duckline") == "postgres://postgres@127.0.0.1:5432/duckline"


def test_sqlite_is_refused() -> None:
    with pytest.raises(SipConfigError, match="cannot read a sqlite database"):
        render(Settings(database_url="sqlite:///var/duckline.db"))


def test_gateway_is_a_sip_uri() -> None:
    with pytest.raises(SipConfigError, match="SIP URI"):
        render(Settings(database_url="postgresql+psycopg://u@h/d", sip_gateway="127.0.0.1:5070"))


def test_cli_writes_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUCKLINE_DATABASE_URL", "sqlite:///var/duckline.db")
    refused = CliRunner().invoke(app, ["sip", "config"])
    assert refused.exit_code == 2
    assert "cannot read a sqlite database" in refused.output

    monkeypatch.setenv("DUCKLINE_DATABASE_URL", "postgresql+psycopg://duck:pw@127.0.0.1:5433/duckline")
    monkeypatch.setenv("DUCKLINE_SIP_LISTEN", "127.0.0.1:5080")
    printed = CliRunner().invoke(app, ["sip", "config"])
    assert printed.exit_code == 0, printed.output
    assert "listen=udp:127.0.0.1:5080" in printed.output
    assert 'modparam("auth_db", "db_url", "postgres://duck:pw@127.0.0.1:5433/duckline")' in printed.output
    written = CliRunner().invoke(app, ["sip", "config", "--output", str(tmp_path / "k.cfg")])
    assert written.exit_code == 0, written.output
    assert (tmp_path / "k.cfg").read_text() == printed.output


def test_rendered_config_passes_kamailios_check(tmp_path: Path) -> None:
    _need(("kamailio", KAMAILIO))
    for gateway in ("", "sip:127.0.0.1:5070"):
        settings = Settings(
            database_url="postgresql+psycopg://duck:pw@127.0.0.1:5432/duckline",
            sip_listen="127.0.0.1:15060",
            sip_gateway=gateway,
        )
        path = tmp_path / "kamailio.cfg"
        path.write_text(render(settings))
        # -c parses the file and loads and configures every module, without starting.
        check = subprocess.run(  # noqa: S603
            [str(KAMAILIO), "-c", "-f", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "config file ok" in check.stdout + check.stderr


@dataclass
class Proxy:
    port: int
    log: Path
    workdir: Path
    gateway_port: int


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    _need(("kamailio", KAMAILIO), ("sipp", SIPP))
    if PG_SKIP_REASON:
        pytest.skip(PG_SKIP_REASON)
    server = make_url(PG_SERVER)
    name = f"duckline_kamailio_{uuid.uuid4().hex[:10]}"
    libpq = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database = server.set(database=name)
    try:
        with psycopg.connect(database.set(drivername="postgresql").render_as_string(hide_password=False)) as db:
            # The shape of Duckline's view (see deploy/kamailio/kamailio.cfg.j2).
            db.execute(
                "CREATE TABLE kamailio_subscriber (id integer PRIMARY KEY, username text NOT NULL,"
                " domain text NOT NULL, ha1 text NOT NULL, ha1b text NOT NULL, rpid text NOT NULL)"
            )
            for number, (user, password) in enumerate(((ALICE, ALICE_PASSWORD), (BOB, BOB_PASSWORD)), 1):
                db.execute(
                    "INSERT INTO kamailio_subscriber VALUES (%s, %s, %s, %s, %s, %s)",
                    (
                        number,
                        user,
                        DOMAIN,
                        _md5(f"{user}:{DOMAIN}:{password}"),
                        _md5(f"{user}@{DOMAIN}:{DOMAIN}:{password}"),
                        f"+{user}",
                    ),
                )
        workdir = tmp_path_factory.mktemp("kamailio")
        port, gateway_port = _free_port(), _free_port()
        settings = Settings(
            database_url=database.render_as_string(hide_password=False),
            sip_domain=DOMAIN,
            sip_listen=f"127.0.0.1:{port}",
            sip_gateway=f"sip:127.0.0.1:{gateway_port}",  # a SIPp UAS stands in for it
        )
        config = workdir / "kamailio.cfg"
        config.write_text(render(settings))
        log = workdir / "kamailio.log"
        with log.open("wb") as output:
            process = subprocess.Popen(  # noqa: S603
                [
                    str(KAMAILIO),
                    "-DD",
                    "-E",
                    "-f",
                    str(config),
                    "-P",
                    str(workdir / "kamailio.pid"),
                    "-Y",
                    str(workdir),
                    "-n",
                    "1",
                    "-m",
                    "64",
                    "-M",
                    "8",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_until_answering(port, process, log)
            yield Proxy(port=port, log=log, workdir=workdir, gateway_port=gateway_port)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        drop_in_background(server, name)


def _wait_until_answering(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Kamailio answers an OPTIONS to itself with "200 Keepalive" once it is up."""
    deadline = time.monotonic() + 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        probe.settimeout(0.5)
        local = probe.getsockname()[1]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"kamailio exited ({process.returncode}):\n{log.read_text()[-4000:]}")
            options = (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                f"From: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:127.0.0.1:{port}>\r\n"
                f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            probe.sendto(options.encode(), ("127.0.0.1", port))
            try:
                answer = probe.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            if answer.startswith("SIP/2.0 200"):
                return
    raise AssertionError(f"kamailio did not answer on 127.0.0.1:{port}:\n{log.read_text()[-4000:]}")


def _sipp(
    proxy: Proxy,
    scenario: str,
    *,
    service: str,
    user: str,
    password: str,
    keys: dict[str, str] | None = None,
    name: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one call of a SIPp client scenario against the proxy; the result has SIPp's logs appended."""
    name = name or scenario
    messages = proxy.workdir / f"{name}.messages.log"
    errors = proxy.workdir / f"{name}.errors.log"
    arguments = [
        str(SIPP),
        f"127.0.0.1:{proxy.port}",
        "-sf",
        str(SCENARIOS / f"{scenario}.xml"),
        "-i",
        "127.0.0.1",
        "-p",
        str(_free_port()),
        "-m",
        "1",
        "-nostdin",
        "-s",
        service,
        "-au",
        user,
        "-ap",
        password,
        "-key",
        "domain",
        DOMAIN,
        "-timeout",
        "20s",
        "-timeout_error",
        "-recv_timeout",
        "8000",
        "-trace_msg",
        "-message_file",
        str(messages),
        "-trace_err",
        "-error_file",
        str(errors),
    ]
    for key, value in (keys or {}).items():
        arguments += ["-key", key, value]
    result = subprocess.run(arguments, capture_output=True, text=True, timeout=60, check=False, cwd=proxy.workdir)  # noqa: S603
    logs = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')}" for p in (messages, errors) if p.exists())
    result.stdout = result.stdout[-3000:] + logs + f"\n--- kamailio\n{proxy.log.read_text(errors='replace')[-3000:]}"
    return result


def _register(proxy: Proxy, user: str, password: str, contact_port: int, scenario: str = "register"):
    return _sipp(
        proxy,
        scenario,
        service=user,
        user=user,
        password=password,
        keys={"contact_port": str(contact_port)},
        name=f"{scenario}-{user}-{uuid.uuid4().hex[:6]}",
    )


def test_register_call_and_asserted_identity(proxy: Proxy) -> None:
    # Alice registers with her password: 401, then 200.
    alice = _register(proxy, ALICE, ALICE_PASSWORD, _free_port())
    assert alice.returncode == 0, alice.stdout

    # Bob's phone with a wrong password is refused (a new challenge or 403), and is not registered:
    refused = _register(proxy, BOB, "not-bobs-password", _free_port(), scenario="register_refused")
    assert refused.returncode == 0, refused.stdout
    # Alice's own credentials do not register a phone for Bob's number (403);
    hijack = _sipp(
        proxy,
        "register_refused",
        service=BOB,
        user=ALICE,
        password=ALICE_PASSWORD,
        keys={"contact_port": str(_free_port())},
        name="register-hijack",
    )
    assert hijack.returncode == 0, hijack.stdout
    assert "403 Forbidden" in (proxy.workdir / "register-hijack.messages.log").read_text()
    # and a call to him finds no phone (480), after Alice authenticated.
    unavailable = _sipp(
        proxy, "call_unavailable", service=BOB, user=ALICE, password=ALICE_PASSWORD, keys={"from_user": ALICE}
    )
    assert unavailable.returncode == 0, unavailable.stdout

    # Bob registers his phone (a SIPp UAS), and Alice calls him claiming another number.
    bob_phone = _free_port()

    def register_bob() -> None:
        bob = _register(proxy, BOB, BOB_PASSWORD, bob_phone)
        assert bob.returncode == 0, bob.stdout

    invite = _answered_call(proxy, BOB, bob_phone, "bob", before_call=register_bob)
    asserted = re.findall(r"^P-Asserted-Identity:\s*(.+?)\s*$", invite, re.MULTILINE | re.IGNORECASE)
    assert asserted == [f"<sip:+{ALICE}@{DOMAIN}>"], invite
    assert re.search(r"^From:.*85299999999", invite, re.MULTILINE), invite  # From is the phone's own claim
    assert not re.search(r"^Proxy-Authorization:", invite, re.MULTILINE | re.IGNORECASE), invite
    assert re.search(rf"^Record-Route:.*127\.0\.0\.1:{proxy.port}", invite, re.MULTILINE), invite


def test_a_number_outside_the_service_goes_to_the_gateway(proxy: Proxy) -> None:
    outside = "85261234567"
    invite = _answered_call(proxy, outside, proxy.gateway_port, "gateway")
    assert invite.startswith(f"INVITE sip:{outside}@"), invite
    asserted = re.findall(r"^P-Asserted-Identity:\s*(.+?)\s*$", invite, re.MULTILINE | re.IGNORECASE)
    assert asserted == [f"<sip:+{ALICE}@{DOMAIN}>"], invite


def _answered_call(
    proxy: Proxy, callee: str, phone_port: int, name: str, before_call: Callable[[], None] | None = None
) -> str:
    """Alice calls CALLEE (From claiming 85299999999), answered by a SIPp UAS on PHONE_PORT; the INVITE it got."""
    callee_log = proxy.workdir / f"{name}.uas.messages.log"
    uas_out = proxy.workdir / f"{name}.uas.out"
    with uas_out.open("w") as output:
        uas = subprocess.Popen(  # noqa: S603
            [
                str(SIPP),
                "-sf",
                str(SCENARIOS / "uas.xml"),
                "-i",
                "127.0.0.1",
                "-p",
                str(phone_port),
                "-m",
                "1",
                "-nostdin",
                "-timeout",
                "30s",
                "-timeout_error",
                "-trace_msg",
                "-message_file",
                str(callee_log),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=proxy.workdir,
        )
    try:
        assert uas.poll() is None, uas_out.read_text()
        if before_call is not None:
            before_call()
        call = _sipp(
            proxy,
            "call",
            service=callee,
            user=ALICE,
            password=ALICE_PASSWORD,
            keys={"from_user": "85299999999"},
            name=f"call-{name}",
        )
        assert call.returncode == 0, call.stdout
        assert uas.wait(timeout=30) == 0, uas_out.read_text() + callee_log.read_text()
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()
    return _received_invite(callee_log.read_text(errors="replace"))


def _received_invite(log: str) -> str:
    """The INVITE the callee's SIPp received, from its message log."""
    for block in re.split(r"^-{5,}.*$", log, flags=re.MULTILINE):
        if "message received" in block or block.lstrip().startswith("INVITE "):
            match = re.search(r"^INVITE .*?(?=\r?\n\r?\n)", block, re.MULTILINE | re.DOTALL)
            if match:
                return match.group(0)
    raise AssertionError(f"no INVITE in the callee's log:\n{log}")
