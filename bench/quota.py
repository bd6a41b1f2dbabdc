"""Credit-control requests per second through the real Gy server over TCP on loopback.

The server is `duckline ocs`, started as its own process on a free loopback port with its own
`DUCKLINE_*` settings (the throwaway database, and the client nodes as its allowed peers). Set-up
(not timed) migrates the database and bulk-inserts a plan and --lines active lines with their
buckets and grants, as bench/usage_ingest.py does. Then --threads client threads, each its own
python-diameter node (a network element with its own connection, CER/CEA by the library), run
data sessions for --seconds (or until --cycles sessions in all): CCR-I asking for 1 MB, CCR-U
reporting 600 KB and asking again, CCR-T reporting 400 KB, each on a line picked at random.
Every request must be answered 2001. Afterwards, checked: the buckets went down by exactly 1 MB
per completed session, there are two usage records per session, and every session is closed with
nothing reserved.

Touches nothing but loopback: a temp SQLite file, or a throwaway `duckline_bench_<random>`
database on a loopback PostgreSQL server, dropped at the end.

    .venv/bin/python bench/quota.py --db both
    .venv/bin/python bench/quota.py --db postgresql --threads 16 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import resource
import shlex
import signal
import socket
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
from diameter.message.avp.grouped import RequestedServiceUnit, UsedServiceUnit  # noqa: E402
from diameter.message.commands import CreditControlRequest  # noqa: E402
from diameter.node import Node  # noqa: E402
from diameter.node.application import SimpleThreadingApplication  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
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

MB = 1_000_000
ASK, FIRST, REST = MB, 600_000, 400_000  # per session: asked, reported in the update, in the end
OCS_HOST, OCS_REALM = "ocs.duckline.example", "duckline.example"
STEPS = ("CCR-I", "CCR-U", "CCR-T")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--lines", type=int, default=2_000, help="active lines the sessions are spread over")
    parser.add_argument("--threads", type=int, default=8, help="client threads, each a network element node")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed run per database")
    parser.add_argument("--cycles", type=int, default=0, help="stop after this many sessions in all (0: no cap)")
    parser.add_argument("--postgres-url", default=DEFAULT_PG, help="a loopback server; a throwaway database is made")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.lines < 1 or not 1 <= args.threads <= 64 or args.seconds <= 0 or args.cycles < 0:
        parser.error("--lines >= 1, --threads 1..64, --seconds > 0, --cycles >= 0")
    if args.db in ("postgresql", "both"):
        check_loopback(parser, args.postgres_url)
    return args


def reproduce_command(args: argparse.Namespace, db: str) -> str:
    parts = [".venv/bin/python", "bench/quota.py", "--db", db, "--lines", str(args.lines)]
    parts += ["--threads", str(args.threads), "--seconds", f"{args.seconds:g}", "--seed", str(args.seed)]
    if args.cycles:
        parts += ["--cycles", str(args.cycles)]
    if db == "postgresql":
        parts += ["--postgres-url", make_url(args.postgres_url).render_as_string(hide_password=True)]
    return shlex.join(parts)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peer_name(index: int) -> str:
    return f"pgw{index}.bench.test"


# --------------------------------------------------------------------------------------------
# The server process


class OcsProcess:
    """`duckline ocs` on a free loopback port, allowing the bench's client nodes as peers."""

    def __init__(self, url: str, log_dir: str, threads: int) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUCKLINE_")}
        env.update(
            DUCKLINE_DATABASE_URL=url,
            DUCKLINE_LOG_DIR=log_dir,
            DUCKLINE_ENVIRONMENT="test",
            DUCKLINE_DIAMETER_PEERS=json.dumps([f"aaa://{peer_name(i)}" for i in range(threads)]),
            DUCKLINE_DIAMETER_MAX_THREADS=str(max(16, threads)),
        )
        command = [sys.executable, "-m", "duckline.cli", "ocs", "--port", str(self.port)]
        self.process = subprocess.Popen(  # noqa: S603 (our own command line)
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.process.stdout is not None
        banner = self.process.stdout.readline()  # printed once the port is bound
        if f":{self.port}" not in banner:
            raise RuntimeError(f"duckline ocs did not start: {banner}{self.process.stdout.read()}")
        self._log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        self._log.extend(self.process.stdout)

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return int(fields["VmHWM"].split()[0]) / 1024

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> tuple[int, list[str]]:
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        return code, [line for line in self._log if "Traceback" in line or "ERROR" in line]


# --------------------------------------------------------------------------------------------
# The clients


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {step: [] for step in STEPS})
    codes: Counter[int] = field(default_factory=Counter)
    cycles: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Element:
    """One network element: a client node connected to the server, sending CCRs."""

    def __init__(self, index: int, port: int) -> None:
        self.name = peer_name(index)
        self.node: Any = Node(self.name, "bench.test", vendor_ids=[constants.VENDOR_TGPP])
        self.node.wakeup_interval = 1
        peer = self.node.add_peer(
            f"aaa://{OCS_HOST}:{port};transport=tcp", OCS_REALM, ip_addresses=["127.0.0.1"], is_persistent=True
        )
        self.app: Any = SimpleThreadingApplication(
            constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION, is_auth_application=True
        )
        self.node.add_application(self.app, [peer])
        self.node.start()

    def ccr(self, session: str, number: int, kind: int, msisdn: str | None, asked: int | None, used: int | None) -> Any:
        ccr = CreditControlRequest()
        ccr.session_id = session
        ccr.origin_host, ccr.origin_realm = self.name.encode(), b"bench.test"
        ccr.destination_realm = OCS_REALM.encode()
        ccr.service_context_id = "32251@3gpp.org"
        ccr.cc_request_type, ccr.cc_request_number = kind, number
        if msisdn:
            ccr.add_subscription_id(constants.E_SUBSCRIPTION_ID_TYPE_END_USER_E164, msisdn.removeprefix("+"))
        ccr.add_multiple_services_credit_control(
            requested_service_unit=RequestedServiceUnit(cc_total_octets=asked) if asked else None,
            used_service_unit=UsedServiceUnit(cc_total_octets=used) if used else None,
            rating_group=10,
        )
        return ccr

    def run(
        self, msisdns: list[str], deadline: float, cap: threading.Semaphore | None, rng: random.Random, results: Results
    ) -> None:
        steps = [(1, ASK, None), (2, ASK, FIRST), (3, None, REST)]
        while time.monotonic() < deadline and (cap is None or cap.acquire(blocking=False)):
            session = self.node.session_generator.next_id()
            msisdn = rng.choice(msisdns)
            timings = []
            for number, (kind, asked, used) in enumerate(steps):
                request = self.ccr(session, number, kind, msisdn if kind == 1 else None, asked, used)
                started = time.perf_counter()
                answer = self.app.send_request(request, timeout=30)
                timings.append(time.perf_counter() - started)
                with results.lock:
                    results.codes[answer.result_code] += 1
                if answer.result_code != 2001:
                    with results.lock:
                        results.failures.append(f"{session} #{number}: {answer.result_code}")
                    break
            else:
                with results.lock:
                    results.cycles += 1
                    for step, seconds in zip(STEPS, timings, strict=True):
                        results.latencies[step].append(seconds)


# --------------------------------------------------------------------------------------------
# One database


def data_totals(engine: Any) -> tuple[int, int, int, int]:
    """Data remaining in all buckets, usage records, open sessions, units still reserved."""
    with engine.connect() as connection:
        left = connection.scalar(select(func.sum(Bucket.remaining)).where(Bucket.unit == Unit.DATA_BYTES))
        records = connection.scalar(select(func.count()).select_from(UsageRecord))
        still_open = connection.scalar(
            select(func.count()).select_from(CreditSession).where(CreditSession.status == "open")
        )
        reserved = connection.scalar(select(func.coalesce(func.sum(CreditSession.reserved), 0)))
    return int(left or 0), int(records or 0), int(still_open or 0), int(reserved or 0)


def run_database(db: str, args: argparse.Namespace) -> bool:
    context = sqlite_database() if db == "sqlite" else postgres_database(args.postgres_url)
    with context as (url, tmp):
        engine = make_engine(url)
        started = time.monotonic()
        upgrade(engine)
        # Allowances sized as usage_ingest does for 1,000 records per line: gigabytes of data each.
        world = populate(engine, argparse.Namespace(lines=args.lines, records=args.lines * 1_000))
        setup = time.monotonic() - started
        version = server_version(engine)
        before = data_totals(engine)

        server = OcsProcess(url, tmp, args.threads)
        elements: list[Element] = []
        try:
            elements = [Element(i, server.port) for i in range(args.threads)]
            for element in elements:
                element.app.wait_for_ready(timeout=15)  # CER/CEA done
            results = Results()
            cap = threading.Semaphore(args.cycles) if args.cycles else None
            load_before, cpu_before = os.getloadavg()[0], server.cpu_seconds()
            wall = time.monotonic()
            deadline = wall + args.seconds
            threads = [
                threading.Thread(
                    target=e.run, args=(world.msisdns, deadline, cap, random.Random(args.seed * 1000 + i), results)
                )
                for i, e in enumerate(elements)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - wall
            load_after, server_cpu = os.getloadavg()[0], server.cpu_seconds() - cpu_before
            peak_rss = server.peak_rss_mib()
        finally:
            stoppers = [threading.Thread(target=e.node.stop, kwargs={"force": True}) for e in elements]
            for thread in stoppers:
                thread.start()
            exit_code, errors = server.stop()
            for thread in stoppers:
                thread.join(timeout=30)
        after = data_totals(engine)
        engine.dispose()

    requests = sum(results.codes.values())
    every = [s for step in STEPS for s in results.latencies[step]]
    drained, records = before[0] - after[0], after[1] - before[1]
    charged_ok = drained == results.cycles * (FIRST + REST) and records == 2 * results.cycles
    closed_ok = after[2] == 0 and after[3] == 0
    answered_ok = not results.failures and exit_code == 0 and not errors

    def ms(values: list[float]) -> str:
        if not values:
            return "-"
        return (
            f"p50 {1000 * percentile(values, 50):.1f} ms, p95 {1000 * percentile(values, 95):.1f} ms,"
            f" p99 {1000 * percentile(values, 99):.1f} ms, max {1000 * max(values):.1f} ms"
        )

    out = [
        f"== {db}: {version}; load average {load_before:.2f} before, {load_after:.2f} after"
        " (other processes share these CPUs)",
        f"  command:          {reproduce_command(args, db)}",
        f"  set-up:           (not timed) {args.lines:,} active lines with buckets and grants, {setup:.1f} s",
        f"  sessions:         {results.cycles:,} completed (CCR-I 1 MB, CCR-U 600 KB used, CCR-T 400 KB used)"
        f" by {args.threads} network elements in {wall:.2f} s",
        f"  throughput:       {requests / wall:,.0f} requests/s, {results.cycles / wall:,.0f} sessions/s",
        f"  {'latency, all:':<18}{ms(every)}",
        *(f"  {'latency, ' + step + ':':<18}{ms(results.latencies[step])}" for step in STEPS),
        "  result codes:     " + ", ".join(f"{code} x {n:,}" for code, n in sorted(results.codes.items())),
        f"  server:           peak RSS {peak_rss:.1f} MiB (VmHWM), CPU {server_cpu:.1f} s"
        f" ({1000 * server_cpu / max(requests, 1):.2f} ms per request); exit code {exit_code}",
        f"  bench process:    maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB"
        " (the client nodes)",
        f"  {'PASS' if answered_ok else 'FAIL'}  every request answered 2001, server exited cleanly"
        + (f"; {results.failures[:3]} {errors[:3]}" if not answered_ok else ""),
        f"  {'PASS' if charged_ok else 'FAIL'}  data buckets drained by {drained:,} bytes = 1 MB x sessions;"
        f" {records:,} usage records = 2 x sessions",
        f"  {'PASS' if closed_ok else 'FAIL'}  every credit session closed, {after[3]:,} units still reserved",
    ]
    print("\n".join(out), flush=True)
    return answered_ok and charged_ok and closed_ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.ERROR)  # the client nodes log every connect and disconnect
    print(
        f"duckline credit-control (Gy) benchmark: Python {platform.python_version()}, {platform.machine()},"
        f" {len(os.sched_getaffinity(0))} CPUs; started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        flush=True,
    )
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    ok = True
    for db in databases:
        ok = run_database(db, args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
