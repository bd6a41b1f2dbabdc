"""Credit-control requests per second through `duckline ocs` over TCP on loopback, Gy and Ro.

The server is `duckline ocs --processes P`, its own processes on a free loopback port with its
own `DUCKLINE_*` settings (the throwaway database; the client connections as its allowed peers).
Set-up (not timed) migrates the database and bulk-inserts a plan and --lines active lines with
their buckets, as bench/usage_ingest.py does.

The clients are --clients processes, each an asyncio loop with --connections connections (one
network element each: CER/CEA, watchdogs answered) running --sessions sessions at once per
connection, closed loop: each session sends its next request when the last was answered. The
requests are built once by python-diameter as templates; a session patches its Session-Id,
number and ids into a copy (so the client costs a few µs per request, not the library's few
hundred, and the figure is the server's). Mixes (--mix):

* gy: a data session with two Multiple-Services-Credit-Control (rating groups 10 and 11):
  CCR-I asking 1 MB in each, CCR-U reporting 600 KB + 100 KB used and asking again, CCR-T
  reporting 400 KB + 50 KB;
* ro: a voice call (Service-Context-Id 32260@3gpp.org, rating group 100, IMS-Information with
  the called number): CCR-I asking 60 s, CCR-U reporting 60 s, CCR-T reporting 30 s; then an
  SMS (32274@3gpp.org, EVENT, direct debiting of one unit).

Every request must be answered 2001. Afterwards, checked against the database: the units charged
(usage records) equal the units reported in requests answered 2001, the buckets went down by as
much, and every session is closed with nothing reserved.

--crash kills every OCS process with SIGKILL half-way through the run and starts the server again
on the same port; the clients reconnect and send what was unanswered again (T bit set), as
network elements do. The same checks must hold: nothing charged twice, nothing lost.

Touches nothing but loopback: a temp SQLite file, or a throwaway `duckline_bench_<random>`
database on a loopback PostgreSQL server, dropped at the end.

    .venv/bin/python bench/quota.py --db postgresql --mix both
    .venv/bin/python bench/quota.py --db postgresql --mix gy --crash
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from diameter.message import constants  # noqa: E402
from diameter.message.avp.grouped import (  # noqa: E402
    ImsInformation,
    RequestedServiceUnit,
    ServiceInformation,
    UsedServiceUnit,
)
from diameter.message.commands import (  # noqa: E402
    CapabilitiesExchangeRequest,
    CreditControlRequest,
    DeviceWatchdogAnswer,
)
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from usage_ingest import (  # noqa: E402
    DEFAULT_PG,
    check_loopback,
    percentile,
    populate,
    postgres_database,
    server_version,
    sqlite_database,
)

from duckline.catalog.rules import Unit  # noqa: E402
from duckline.db.engine import make_engine  # noqa: E402
from duckline.db.migrate import upgrade  # noqa: E402
from duckline.usage.models import Bucket, CreditSession, UsageRecord  # noqa: E402

OCS_HOST, OCS_REALM, CLIENT_REALM = "ocs.duckline.example", "duckline.example", "bench.test"
MB = 1_000_000
MSISDN_SLOT = "85299999999"  # a placeholder of the bench's numbers' length, patched per session
SESSION_SLOT = "{peer};" + "0" * 10 + ";" + "0" * 6
# What each request of a mix reports used, by unit (charged when it is answered 2001).
GY = [("CCR-I", 1, {}), ("CCR-U", 2, {"data": 700_000}), ("CCR-T", 3, {"data": 450_000})]
RO = [("call-I", 1, {}), ("call-U", 2, {"voice": 60}), ("call-T", 3, {"voice": 30}), ("SMS", 4, {"sms": 1})]
HEADER = 20


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="postgresql")
    parser.add_argument("--mix", choices=["gy", "ro", "both"], default="both")
    parser.add_argument("--lines", type=int, default=2_000, help="active lines the sessions are spread over")
    parser.add_argument("--processes", type=int, default=2, help="OCS server processes (duckline ocs --processes)")
    parser.add_argument("--threads", type=int, default=2, help="batches charged at once per OCS process")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--connections", type=int, default=4, help="connections (network elements) per client")
    parser.add_argument("--sessions", type=int, default=16, help="sessions at once per connection")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed run per database and mix")
    parser.add_argument("--crash", action="store_true", help="SIGKILL the OCS half-way and start it again")
    parser.add_argument("--postgres-url", default=DEFAULT_PG, help="a loopback server; a throwaway database is made")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if (
        min(args.lines, args.processes, args.threads, args.clients, args.connections, args.sessions) < 1
        or args.seconds <= 0
    ):
        parser.error("counts must be >= 1 and --seconds > 0")
    if args.db in ("postgresql", "both"):
        check_loopback(parser, args.postgres_url)
    return args


def reproduce_command(args: argparse.Namespace, db: str, mix: str) -> str:
    parts = [".venv/bin/python", "bench/quota.py", "--db", db, "--mix", mix, "--lines", str(args.lines)]
    parts += ["--processes", str(args.processes), "--threads", str(args.threads), "--clients", str(args.clients)]
    parts += ["--connections", str(args.connections), "--sessions", str(args.sessions)]
    parts += ["--seconds", f"{args.seconds:g}", "--seed", str(args.seed)] + (["--crash"] if args.crash else [])
    if db == "postgresql":
        parts += ["--postgres-url", make_url(args.postgres_url).render_as_string(hide_password=True)]
    return shlex.join(parts)


def peer_name(client: int, connection: int) -> str:
    return f"pgw{client}x{connection}.bench.test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------------------------
# The server


class OcsServer:
    """`duckline ocs --processes N` on a loopback port, allowing the bench's connections."""

    def __init__(self, url: str, log_dir: str, args: argparse.Namespace, port: int) -> None:
        self.port = port
        peers = [f"aaa://{peer_name(c, n)}" for c in range(args.clients) for n in range(args.connections)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUCKLINE_")}
        env.update(
            DUCKLINE_DATABASE_URL=url,
            DUCKLINE_LOG_DIR=log_dir,
            DUCKLINE_ENVIRONMENT="test",
            DUCKLINE_DIAMETER_PEERS=json.dumps(peers),
            DUCKLINE_DIAMETER_MAX_THREADS=str(args.threads),
            PYTHONPATH=str(ROOT),
        )
        command = [sys.executable, "-m", "duckline.cli", "ocs", "--port", str(port)]
        if args.processes > 1:  # (so that it can drive a server from before the option)
            command += ["--processes", str(args.processes)]
        self.process = subprocess.Popen(  # noqa: S603 (our own command line)
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.process.stdout is not None
        banner = self.process.stdout.readline()  # printed once the port is bound
        if f":{port}" not in banner:
            raise RuntimeError(f"duckline ocs did not start: {banner}{self.process.stdout.read()}")
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        self.log.extend(self.process.stdout)

    def pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        found = [int(p) for p in children.read_text().split()] if children.exists() else []
        return [self.process.pid, *found]

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return total

    def peak_rss_mib(self) -> float:
        peak = 0.0
        for pid in self.pids()[1:] or self.pids():
            fields = dict(
                line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
            )
            peak = max(peak, int(fields["VmHWM"].split()[0]) / 1024)
        return peak

    def kill(self) -> None:
        for pid in reversed(self.pids()):
            os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> tuple[int, list[str]]:
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        return code, [line for line in self.log if "Traceback" in line or " ERROR " in line]


# --------------------------------------------------------------------------------------------
# The clients


@dataclass
class Template:
    """A request as bytes, and where to patch a session into it."""

    name: str
    data: bytes
    session_at: int
    msisdn_at: int | None
    used: dict[str, int]


def templates(mix: str, peer: str) -> list[Template]:
    steps = GY if mix == "gy" else RO
    found = []
    for number, (name, kind, used) in enumerate(steps):
        ccr = CreditControlRequest()
        ccr.header.application_id = constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION
        ccr.session_id = SESSION_SLOT.format(peer=peer)
        ccr.origin_host, ccr.origin_realm = peer.encode(), CLIENT_REALM.encode()
        ccr.destination_realm = OCS_REALM.encode()
        ccr.add_subscription_id(constants.E_SUBSCRIPTION_ID_TYPE_END_USER_E164, MSISDN_SLOT)
        if mix == "gy":
            ccr.service_context_id = "32251@3gpp.org"
            ccr.cc_request_type, ccr.cc_request_number = kind, number
            for group, share in ((10, 600_000 if kind == 2 else 400_000), (11, 100_000 if kind == 2 else 50_000)):
                ccr.add_multiple_services_credit_control(
                    requested_service_unit=RequestedServiceUnit(cc_total_octets=MB) if kind != 3 else None,
                    used_service_unit=[UsedServiceUnit(cc_total_octets=share)] if kind != 1 else [],
                    rating_group=group,
                )
        elif kind == 4:  # the SMS: an event of its own session
            ccr.service_context_id = "32274@3gpp.org"
            ccr.cc_request_type, ccr.cc_request_number = 4, 0
            ccr.requested_action = constants.E_REQUESTED_ACTION_DIRECT_DEBITING
            ccr.add_multiple_services_credit_control(
                requested_service_unit=RequestedServiceUnit(cc_service_specific_units=1), rating_group=200
            )
        else:
            ccr.service_context_id = "32260@3gpp.org"
            ccr.cc_request_type, ccr.cc_request_number = kind, number
            ccr.service_information = ServiceInformation(
                ims_information=ImsInformation(
                    node_functionality=6,  # AS
                    role_of_node=0,  # originating
                    calling_party_address=[f"tel:+{MSISDN_SLOT}"],
                    called_party_address="tel:+85223456789",
                )
            )
            ccr.add_multiple_services_credit_control(
                requested_service_unit=RequestedServiceUnit(cc_time=60) if kind != 3 else None,
                used_service_unit=[UsedServiceUnit(cc_time=used["voice"])] if kind != 1 else [],
                rating_group=100,
            )
        data = bytes(ccr.as_bytes())
        session_at = data.index(SESSION_SLOT.format(peer=peer).encode())
        msisdn_at = data.index(MSISDN_SLOT.encode())
        found.append(Template(name, data, session_at, msisdn_at, used))
    return found


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    codes: Counter[int] = field(default_factory=Counter)
    used: Counter[str] = field(default_factory=Counter)  # units reported in requests answered 2001
    sessions: int = 0
    resent: int = 0
    reconnects: int = 0
    failures: list[str] = field(default_factory=list)


def result_code(data: bytes) -> int:
    at = HEADER
    while at < len(data):
        code, word = struct.unpack_from(">II", data, at)
        length = word & 0xFFFFFF
        if code == constants.AVP_RESULT_CODE:
            return int(struct.unpack_from(">I", data, at + length - 4)[0])
        at += (length + 3) & ~3
    return 0


class Element:
    """One connection: a network element with many sessions at once; reconnects and resends what
    was not answered when the server goes away."""

    def __init__(self, client: int, index: int, port: int, mix: str, msisdns: list[str], tally: Tally) -> None:
        self.peer = peer_name(client, index)
        self.port, self.mix, self.msisdns, self.tally = port, mix, msisdns, tally
        self.templates = templates(mix, self.peer)
        self.waiting: dict[int, tuple[asyncio.Future[int], bytes]] = {}
        self.ids = iter(range(1, 1 << 31))
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.sessions = 0

    async def connect(self) -> None:
        while True:  # until a server answers CER (one being restarted may take a while)
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                cer = CapabilitiesExchangeRequest()
                cer.header.hop_by_hop_identifier = cer.header.end_to_end_identifier = 1
                cer.origin_host, cer.origin_realm = self.peer.encode(), CLIENT_REALM.encode()
                cer.host_ip_address = ["127.0.0.1"]
                cer.vendor_id, cer.product_name = 0, "duckline-bench"
                cer.auth_application_id = [constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION]
                writer.write(cer.as_bytes())
                cea = await self._read(reader)
                break
            except (OSError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.05)
        if result_code(cea) != 2001:
            raise RuntimeError(f"{self.peer}: CEA {result_code(cea)}")
        self.writer = writer
        asyncio.get_running_loop().create_task(self._answers(reader, writer))
        for hop, (_, data) in list(self.waiting.items()):  # unanswered before: again, T bit set
            again = bytearray(data)
            again[4] |= 0x10
            writer.write(again)
            self.tally.resent += 1
            self.waiting[hop] = (self.waiting[hop][0], bytes(again))
        self.connected.set()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> bytes:
        head = await reader.readexactly(4)
        return head + await reader.readexactly(int.from_bytes(head[1:4], "big") - 4)

    async def _answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await self._read(reader)
                flags, hop = data[4], int.from_bytes(data[12:16], "big")
                if flags & 0x80:  # a request of the server's: a watchdog
                    if int.from_bytes(data[5:8], "big") == 280:
                        dwa = DeviceWatchdogAnswer()
                        dwa.header.hop_by_hop_identifier = hop
                        dwa.header.end_to_end_identifier = int.from_bytes(data[16:20], "big")
                        dwa.origin_host, dwa.origin_realm, dwa.result_code = self.peer.encode(), b"bench.test", 2001
                        writer.write(dwa.as_bytes())
                    continue
                pending = self.waiting.pop(hop, None)
                if pending is not None and not pending[0].done():
                    pending[0].set_result(result_code(data))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.writer = None
        self.connected.clear()
        self.tally.reconnects += 1
        asyncio.get_running_loop().create_task(self.connect())

    async def ask(self, template: Template, session: bytes, msisdn: bytes) -> int:
        hop = next(self.ids)
        data = bytearray(template.data)
        data[12:20] = struct.pack(">II", hop, hop)
        data[template.session_at : template.session_at + len(session)] = session
        if template.msisdn_at is not None:
            data[template.msisdn_at : template.msisdn_at + len(msisdn)] = msisdn
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting[hop] = (answer, bytes(data))
        await self.connected.wait()
        if self.writer is not None:
            self.writer.write(data)
        return await answer

    async def sessions_loop(self, slot: int, deadline: float, rng: random.Random) -> None:
        per_session = [self.templates] if self.mix == "gy" else [self.templates[:3], self.templates[3:]]
        while time.monotonic() < deadline:
            msisdn = rng.choice(self.msisdns).removeprefix("+").encode()
            for steps in per_session:
                self.sessions += 1
                session = f"{self.peer};{self.sessions:010d};{slot:06d}".encode()
                for template in steps:
                    started = time.perf_counter()
                    code = await self.ask(template, session, msisdn)
                    self.tally.latencies.setdefault(template.name, []).append(time.perf_counter() - started)
                    self.tally.codes[code] += 1
                    if code != 2001:
                        self.tally.failures.append(f"{session.decode()} {template.name}: {code}")
                        return
                    self.tally.used.update(template.used)
            self.tally.sessions += 1


def client_main(
    index: int, args: argparse.Namespace, port: int, mix: str, msisdns: list[str], start: float, out: Any
) -> None:
    async def run() -> Tally:
        tally = Tally()
        elements = [Element(index, n, port, mix, msisdns, tally) for n in range(args.connections)]
        for element in elements:
            await element.connect()
        while time.time() < start:
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + args.seconds
        rng = random.Random(args.seed * 1000 + index)
        await asyncio.gather(*(e.sessions_loop(s, deadline, rng) for e in elements for s in range(args.sessions)))
        return tally

    tally = asyncio.run(run())
    out.put(tally)


# --------------------------------------------------------------------------------------------
# One database, one mix


def totals(engine: Any) -> dict[str, int]:
    with engine.connect() as connection:
        left = dict(connection.execute(select(Bucket.unit, func.sum(Bucket.remaining)).group_by(Bucket.unit)).all())
        charged = dict(
            connection.execute(
                select(UsageRecord.unit, func.sum(UsageRecord.quantity)).group_by(UsageRecord.unit)
            ).all()
        )
        still_open = connection.scalar(
            select(func.count()).select_from(CreditSession).where(CreditSession.status == "open")
        )
        reserved = connection.scalar(select(func.coalesce(func.sum(CreditSession.reserved), 0)))
        commits = 0
        if engine.dialect.name == "postgresql":
            commits = connection.scalar(
                text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            )
    units = {"data": Unit.DATA_BYTES, "voice": Unit.VOICE_SECONDS, "sms": Unit.SMS}
    found = {f"left_{k}": int(left.get(u, 0) or 0) for k, u in units.items()}
    found |= {f"charged_{k}": int(charged.get(u, 0) or 0) for k, u in units.items()}
    return found | {"open": int(still_open or 0), "reserved": int(reserved or 0), "commits": int(commits or 0)}


def run_one(db: str, mix: str, args: argparse.Namespace) -> bool:
    context = sqlite_database() if db == "sqlite" else postgres_database(args.postgres_url)
    with context as (url, tmp):
        engine = make_engine(url)
        started = time.monotonic()
        upgrade(engine)
        world = populate(engine, argparse.Namespace(lines=args.lines, records=args.lines * 5_000))
        setup = time.monotonic() - started
        version = server_version(engine)
        before = totals(engine)
        port = free_port()
        server = OcsServer(url, tmp, args, port)
        exit_code, errors = 0, []
        try:
            context_mp = multiprocessing.get_context("spawn")
            queue = context_mp.Queue()
            start = time.time() + 2.0 + 0.5 * args.clients  # the clients connect first, then start together
            clients = [
                context_mp.Process(target=client_main, args=(i, args, port, mix, world.msisdns, start, queue))
                for i in range(args.clients)
            ]
            for client in clients:
                client.start()
            while time.time() < start:
                time.sleep(0.01)
            load_before, cpu_before = os.getloadavg()[0], server.cpu_seconds()
            wall = time.monotonic()
            crashed_cpu = 0.0
            if args.crash:
                time.sleep(args.seconds / 2)
                crashed_cpu = server.cpu_seconds() - cpu_before
                server.kill()
                server = OcsServer(url, tmp, args, port)
                cpu_before = server.cpu_seconds()
            tallies = [queue.get(timeout=args.seconds + 600) for _ in clients]
            wall = time.monotonic() - wall
            load_after, server_cpu = os.getloadavg()[0], crashed_cpu + server.cpu_seconds() - cpu_before
            peak_rss = server.peak_rss_mib()
            for client in clients:
                client.join(timeout=30)
        finally:
            exit_code, errors = server.stop()
        after = totals(engine)
        engine.dispose()

    codes: Counter[int] = sum((t.codes for t in tallies), Counter())
    used: Counter[str] = sum((t.used for t in tallies), Counter())
    latencies: dict[str, list[float]] = {}
    for tally in tallies:
        for name, values in tally.latencies.items():
            latencies.setdefault(name, []).extend(values)
    every = [v for values in latencies.values() for v in values]
    requests = sum(codes.values())
    sessions = sum(t.sessions for t in tallies)
    failures = [f for t in tallies for f in t.failures]
    charged = {k: after[f"charged_{k}"] - before[f"charged_{k}"] for k in ("data", "voice", "sms")}
    drained = {k: before[f"left_{k}"] - after[f"left_{k}"] for k in ("data", "voice", "sms")}
    charged_ok = all(charged[k] == used.get(k, 0) == drained[k] for k in charged)
    closed_ok = after["open"] == 0 and after["reserved"] == 0
    answered_ok = not failures and exit_code == 0 and not errors
    commits = after["commits"] - before["commits"]

    def ms(values: list[float]) -> str:
        if not values:
            return "-"
        return (
            f"p50 {1000 * percentile(values, 50):.1f} ms, p95 {1000 * percentile(values, 95):.1f} ms,"
            f" p99 {1000 * percentile(values, 99):.1f} ms, max {1000 * max(values):.1f} ms"
        )

    out = [
        f"== {db}, {mix}: {version}; load average {load_before:.2f} before, {load_after:.2f} after"
        " (other processes share these CPUs)",
        f"  command:          {reproduce_command(args, db, mix)}",
        f"  set-up:           (not timed) {args.lines:,} active lines with buckets, {setup:.1f} s",
        f"  load:             {args.clients} client process(es) x {args.connections} connections"
        f" x {args.sessions} sessions at once; server: {args.processes} process(es) x {args.threads} threads",
        f"  completed:        {sessions:,} {'sessions' if mix == 'gy' else 'calls + SMS'} in {wall:.2f} s"
        + (f"; SIGKILL of every OCS process at {args.seconds / 2:g} s, then a restart" if args.crash else ""),
        f"  throughput:       {requests / wall:,.0f} requests/s",
        f"  {'latency, all:':<18}{ms(every)}",
        *(f"  {'latency, ' + name + ':':<18}{ms(values)}" for name, values in latencies.items()),
        "  result codes:     " + ", ".join(f"{code} x {n:,}" for code, n in sorted(codes.items())),
        f"  server:           CPU {server_cpu:.1f} s ({1000 * server_cpu / max(requests, 1):.3f} ms per request),"
        f" peak RSS {peak_rss:.1f} MiB per process (VmHWM); exit code {exit_code}",
        f"  database:         {commits:,} commits ({requests / max(commits, 1):.1f} requests per transaction)"
        if commits
        else "  database:         (commit counts are read on PostgreSQL only)",
        f"  clients:          {sum(t.resent for t in tallies):,} requests sent again after a reconnect",
        f"  {'PASS' if answered_ok else 'FAIL'}  every request answered 2001, server exited cleanly"
        + (f"; {failures[:3]} {errors[:3]}" if not answered_ok else ""),
        f"  {'PASS' if charged_ok else 'FAIL'}  charged = reported in answered requests = drained from buckets:"
        + "; ".join(f" {k} {charged[k]:,} / {used.get(k, 0):,} / {drained[k]:,}" for k in charged),
        f"  {'PASS' if closed_ok else 'FAIL'}  every credit session closed ({after['open']} open),"
        f" {after['reserved']:,} units still reserved",
    ]
    print("\n".join(out), flush=True)
    return answered_ok and charged_ok and closed_ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print(
        f"duckline credit-control (Gy/Ro) benchmark: Python {platform.python_version()}, {platform.machine()},"
        f" {len(os.sched_getaffinity(0))} CPUs; started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        flush=True,
    )
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    mixes = ["gy", "ro"] if args.mix == "both" else [args.mix]
    ok = True
    for db in databases:
        for mix in mixes:
            ok = run_one(db, mix, args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
