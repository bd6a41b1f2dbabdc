"""End-to-end renewals per second through the HTTP API, paid with the built-in sandbox provider.

The script starts `duckline serve` itself, as a separate process on a free loopback port, with
its own DUCKLINE_* environment (any DUCKLINE_* variables of the caller are not passed on), and
drives it with --concurrency client threads (one httpx.Client each, keep-alive).

One renewal is what a subscriber's app and browser do:

1. POST /api/v1/orders (bearer token, Idempotency-Key, payment_method "card" → sandbox): the
   order, its payment attempt, and the sandbox's hosted-page URL;
2. POST /sandbox/checkout/{ref} with card 4242 4242 4242 4242 (the provider's hosted page; the
   303 to the return URL is not followed);
3. GET /api/v1/payments/{id}/return (bearer token): asks the provider, confirms and fulfils;
   the order must come back "fulfilled" with a receipt number.

Set-up is not timed: it migrates a throwaway database (a temp SQLite file, or
`duckline_bench_<random>` on a loopback PostgreSQL server, dropped at the end), inserts a plan
and --lines subscribers with one active line each straight into the tables (registration would
only add argon2 and identity checks the renewal never touches), starts the server, and takes a
bearer token per subscriber with POST /api/v1/auth/tokens. Lines are renewed round robin, so the
clients never queue on one line, and no line comes near the HK$3,000 monthly cap (the real
limit is kept and checked on every order). A few warm-up renewals run before the clock starts.

Bounded: the timed run stops starting renewals after --seconds (default 30) or --renewals,
whichever comes first. Afterwards the database is checked: each successful renewal has exactly
one receipt, fulfilled orders equal successful renewals, receipt numbers have no gaps.

    .venv/bin/python bench/renewals.py --db both
    .venv/bin/python bench/renewals.py --db postgresql --py-spy 10     # where the server's CPU goes
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import Engine, Table, func, insert, inspect, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from duckline.accounts.models import Account  # noqa: E402
from duckline.billing.models import Order, Payment, Receipt, SandboxPayment, SandboxWebhook, WebhookEvent  # noqa: E402
from duckline.billing.order_states import OrderStatus, PaymentStatus  # noqa: E402
from duckline.catalog.models import Plan, PlanAllowance  # noqa: E402
from duckline.core.config import Settings  # noqa: E402
from duckline.core.protection import Passwords  # noqa: E402
from duckline.db.engine import make_engine  # noqa: E402
from duckline.db.migrate import upgrade  # noqa: E402
from duckline.lines.models import Line  # noqa: E402
from duckline.usage.models import Bucket, LedgerEntry  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PLAN_CODE = "bench-voice-30"
PLAN_PRICE = 8800  # HK$88, like the demo's hk-voice-30
ALLOWANCES = [("voice_seconds", 3000 * 60), ("sms", 300), ("data_bytes", 5 * 1024**3)]
PASSWORD = "bench renewal password"
CARD = "4242424242424242"
# Only set-up verifies passwords (one POST /auth/tokens per subscriber); bearer tokens are
# looked up by SHA-256, so no timed request runs argon2.
SETUP_ONLY_ENV = {"DUCKLINE_PASSWORD_TIME_COST": "1", "DUCKLINE_PASSWORD_MEMORY_KIB": "1024"}
GENEROUS_RATE = "1000000/minute"
MONTHLY_LIMIT = cast(int, Settings.model_fields["monthly_line_limit"].default)
RENEWALS_PER_LINE_MONTH = MONTHLY_LIMIT // PLAN_PRICE  # 34 with the defaults
TARGET_RATE, TARGET_P99_MS = 250.0, 100.0
# The counting pass: a second server with DUCKLINE_SQL_COUNTS=1 reports each request's SQL in
# response headers (duckline/web/sql_counts.py); the timed server runs without it.
COUNTING_ENV = {"DUCKLINE_SQL_COUNTS": "1"}
STATEMENTS_HEADER, TRANSACTIONS_HEADER = "x-duckline-statements", "x-duckline-transactions"
AUTOCOMMIT_HEADER = "x-duckline-autocommit"
COUNTED_RENEWALS = 20
STEPS = ["POST /api/v1/orders", "POST /sandbox/checkout/{ref}", "GET /payments/{id}/return"]
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

_accounts = cast(Table, Account.__table__)
_plans = cast(Table, Plan.__table__)
_allowances = cast(Table, PlanAllowance.__table__)
_lines = cast(Table, Line.__table__)
_buckets = cast(Table, Bucket.__table__)
_ledger = cast(Table, LedgerEntry.__table__)


# --------------------------------------------------------------------------------------------
# Options and reproduction


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads, one renewal in flight each")
    parser.add_argument("--seconds", type=float, default=30.0, help="cap on the timed run per database")
    parser.add_argument(
        "--renewals",
        type=int,
        default=None,
        help="cap on renewals in the timed run (default: all the monthly cap allows, 34 per line less the warm-up)",
    )
    parser.add_argument("--lines", type=int, default=2_000, help="subscribers, one active line each")
    parser.add_argument("--warmup", type=int, default=40, help="renewals before the clock starts (not counted)")
    parser.add_argument("--postgres-url", default=DEFAULT_PG, help="a loopback server; a throwaway database is made")
    parser.add_argument(
        "--webhooks",
        action="store_true",
        help="also run the in-process worker (DUCKLINE_ENVIRONMENT=development), which delivers the sandbox's"
        " webhooks (twice each) to the server during the run",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="DUCKLINE_NAME=VALUE",
        help="one more setting for the server (repeatable), e.g. DUCKLINE_DELIVER_AFTER_COMMIT=false",
    )
    parser.add_argument(
        "--py-spy", type=float, default=0.0, metavar="SECONDS", help="profile the server with py-spy during the run"
    )
    parser.add_argument(
        "--server-workers", type=int, default=1, metavar="N", help="server processes (`duckline serve --workers N`)"
    )
    args = parser.parse_args(argv)
    if args.renewals is None:
        args.renewals = args.lines * RENEWALS_PER_LINE_MONTH - args.warmup
    if args.concurrency < 1 or args.lines < 1 or args.renewals < 1 or args.warmup < 0:
        parser.error("--concurrency, --lines and --renewals must be positive, --warmup not negative")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.lines < args.concurrency:
        parser.error("--lines must be at least --concurrency (the clients renew different lines)")
    per_line = -(-(args.renewals + args.warmup) // args.lines)
    if per_line > RENEWALS_PER_LINE_MONTH:
        parser.error(
            f"{args.renewals + args.warmup} renewals over {args.lines} lines is {per_line} per line, above the"
            f" {RENEWALS_PER_LINE_MONTH} that the HK${MONTHLY_LIMIT // 100:,} monthly cap allows at"
            f" HK${PLAN_PRICE // 100}: raise --lines"
        )
    if args.py_spy < 0:
        parser.error("--py-spy must not be negative")
    if args.server_workers < 1:
        parser.error("--server-workers must be at least 1")
    for setting in args.server_env:
        name, sep, _ = setting.partition("=")
        if not sep or not name.startswith("DUCKLINE_"):
            parser.error(f"--server-env takes DUCKLINE_NAME=VALUE, not {setting!r}")
    if args.db in ("postgresql", "both"):
        check_loopback(parser, args.postgres_url)
    return args


def check_loopback(parser: argparse.ArgumentParser, url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        parser.error("--postgres-url must be a postgresql:// URL")
    host = parsed.host or ""
    if host in ("", "localhost") or host.startswith("/"):
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    parser.error(f"--postgres-url must point at a loopback server, not {host!r}")


def reproduce_command(args: argparse.Namespace, db: str) -> str:
    parts = [".venv/bin/python", "bench/renewals.py", "--db", db]
    parts += ["--concurrency", str(args.concurrency), "--seconds", f"{args.seconds:g}"]
    parts += ["--renewals", str(args.renewals), "--lines", str(args.lines), "--warmup", str(args.warmup)]
    if db == "postgresql":
        parts += ["--postgres-url", make_url(args.postgres_url).render_as_string(hide_password=True)]
    if args.webhooks:
        parts.append("--webhooks")
    for setting in args.server_env:
        parts += ["--server-env", setting]
    if args.py_spy:
        parts += ["--py-spy", f"{args.py_spy:g}"]
    if args.server_workers > 1:
        parts += ["--server-workers", str(args.server_workers)]
    return shlex.join(parts)


# --------------------------------------------------------------------------------------------
# Databases


@contextlib.contextmanager
def sqlite_database(tmp: str) -> Iterator[tuple[str, str | None]]:
    yield f"sqlite:///{tmp}/bench.db", None


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[tuple[str, str | None]]:
    server = make_url(server_url)
    query = dict(server.query)
    query.setdefault("connect_timeout", "5")
    server = server.set(query=query)
    name = f"duckline_bench_{secrets.token_hex(5)}"
    admin = make_engine(server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT", pool_size=1)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False), name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def server_version(engine: Engine) -> str:
    if engine.dialect.name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with engine.connect() as connection:
        version = str(connection.execute(text("SHOW server_version")).scalar_one()).split()[0]
        commit = connection.execute(text("SHOW synchronous_commit")).scalar_one()
    return f"PostgreSQL {version} (synchronous_commit={commit})"


# --------------------------------------------------------------------------------------------
# Set-up: a plan, subscribers and active lines, straight into the tables


@dataclass
class World:
    phones: list[str]
    line_ids: list[int]
    first_expiry: datetime


def populate(engine: Engine, lines: int) -> World:
    now = datetime.now(UTC)
    period_start, expires = now - timedelta(days=20), now + timedelta(days=10)
    password_hash = Passwords(1, 1024).hash(PASSWORD)  # what the server verifies at POST /auth/tokens
    names = {"en": "Bench Voice 30", "zh_Hant": "Bench Voice 30", "zh_Hans": "Bench Voice 30"}
    phones = [f"+8526{n:07d}" for n in range(lines)]
    with engine.begin() as connection:
        plan_id = connection.execute(
            insert(_plans).returning(_plans.c.id),
            {
                "code": PLAN_CODE,
                "kind": "plan",
                "status": "active",
                "names": names,
                "descriptions": names,
                "price_amount": PLAN_PRICE,
                "currency": "HKD",
                "validity_days": 30,
                "validity_months": 0,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        connection.execute(
            insert(_allowances),
            [{"plan_id": plan_id, "unit": unit, "zone": "HK", "amount": amount} for unit, amount in ALLOWANCES],
        )
        connection.execute(
            insert(_accounts),
            [
                {
                    "phone": phone,
                    "phone_verified_at": now,
                    "password_hash": password_hash,
                    "role": "subscriber",
                    "language": "en",
                    "timezone": "Asia/Hong_Kong",
                    "created_at": now,
                }
                for phone in phones
            ],
        )
        account_of = dict(connection.execute(select(_accounts.c.phone, _accounts.c.id)).all())
        connection.execute(
            insert(_lines),
            [
                {
                    "account_id": account_of[phone],
                    "msisdn": f"+8525{n:07d}",
                    "status": "active",
                    "plan_id": plan_id,
                    "period_start": period_start,
                    "expires_at": expires,
                    "voicemail": False,
                    "caller_id": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for n, phone in enumerate(phones)
            ],
        )
        line_of = dict(connection.execute(select(_lines.c.msisdn, _lines.c.id)).all())
        line_ids = [line_of[f"+8525{n:07d}"] for n in range(lines)]
        connection.execute(
            insert(_buckets),
            [
                {
                    "line_id": line_id,
                    "unit": unit,
                    "zone": "HK",
                    "initial": amount,
                    "remaining": amount,
                    "valid_from": period_start,
                    "valid_until": expires,
                    "source": "plan",
                    "source_ref": f"activation:{line_id}",
                    "created_at": now,
                }
                for line_id in line_ids
                for unit, amount in ALLOWANCES
            ],
        )
        connection.execute(
            insert(_ledger),
            [
                {
                    "line_id": row.line_id,
                    "bucket_id": row.id,
                    "unit": row.unit,
                    "zone": row.zone,
                    "delta": row.initial,
                    "reason": "grant",
                    "usage_record_id": None,
                    "created_at": now,
                }
                for row in connection.execute(
                    select(_buckets.c.id, _buckets.c.line_id, _buckets.c.unit, _buckets.c.zone, _buckets.c.initial)
                )
            ],
        )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
    return World(phones, line_ids, expires)


# --------------------------------------------------------------------------------------------
# The server process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(url: str, port: int, log_dir: Path, webhooks: bool, extra: list[str]) -> dict[str, str]:
    env = {
        "DUCKLINE_DATABASE_URL": url,
        "DUCKLINE_ENVIRONMENT": "development" if webhooks else "test",
        "DUCKLINE_WORKER_IN_PROCESS": "true" if webhooks else "false",
        "DUCKLINE_HOST": "127.0.0.1",
        "DUCKLINE_PORT": str(port),
        "DUCKLINE_BASE_URL": f"http://127.0.0.1:{port}",
        "DUCKLINE_LOG_DIR": str(log_dir),
        "DUCKLINE_LOGIN_RATE_LIMIT": GENEROUS_RATE,
        "DUCKLINE_OTP_RATE_LIMIT": GENEROUS_RATE,
        **SETUP_ONLY_ENV,
    }
    for setting in extra:
        name, _, value = setting.partition("=")
        env[name] = value
    return env


def shown_env(env: dict[str, str]) -> str:
    shown = {
        k: make_url(v).render_as_string(hide_password=True) if k.endswith("DATABASE_URL") else v for k, v in env.items()
    }
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in shown.items())


class Server:
    """`duckline serve` in its own process (own session, so a Ctrl-C here reaches only us)."""

    def __init__(self, env: dict[str, str], port: int, cwd: Path, workers: int = 1) -> None:
        self.port, self.base_url = port, f"http://127.0.0.1:{port}"
        self.log_path = cwd / "server.log"
        script = Path(sys.executable).with_name("duckline")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "duckline.cli"]
        command += ["serve", "--host", "127.0.0.1", "--port", str(port)]
        if workers > 1:
            command += ["--workers", str(workers)]
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DUCKLINE_")}
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own command line
            command,
            cwd=cwd,  # no .env file or var/ of the checkout
            env={**inherited, **env, "PYTHONPATH": str(ROOT)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid
        self.exit_code: int | None = None
        self.stopped_cleanly = False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/api/v1/health").status_code == 200:
                        return
                time.sleep(0.1)
        raise RuntimeError(f"the server did not answer within {timeout:g} s:\n{self.log_tail()}")

    def peak_rss_mib(self) -> tuple[float, float]:
        """(peak, current) resident set size: psutil if installed and it knows the peak (not on
        Linux), else VmHWM and VmRSS from /proc/<pid>/status."""
        with contextlib.suppress(ImportError, AttributeError):
            import psutil

            info = psutil.Process(self.pid).memory_info()
            return getattr(info, "peak_rss", info.peak_wset) / MIB, info.rss / MIB
        fields = dict(row.split(":", 1) for row in Path(f"/proc/{self.pid}/status").read_text().splitlines())
        return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # uvicorn: graceful shutdown, lifespan end
            try:
                self.process.wait(timeout)
                self.stopped_cleanly = True
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.exit_code = self.process.returncode
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# CPU accounting (Linux /proc)


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (with --server-workers, uvicorn's worker processes)."""
    return process_cpu_seconds(pid) + sum(tree_cpu_seconds(child) for child in children(pid))


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSnapshot:
    at: float
    machine: tuple[float, float]
    server: float
    client: float
    backends: dict[int, float]


def backend_pids(engine: Engine | None, database: str | None) -> list[int]:
    if engine is None or database is None:
        return []
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"),
            {"name": database},
        )
        return [int(r[0]) for r in rows]


def cpu_snapshot(server_pid: int, pids: list[int]) -> CpuSnapshot:
    return CpuSnapshot(
        time.perf_counter(),
        machine_cpu(),
        tree_cpu_seconds(server_pid),
        own_cpu_seconds(),
        {pid: process_cpu_seconds(pid) for pid in pids},
    )


PG_COUNTERS = ["xact_commit", "xact_rollback", "tup_fetched", "tup_inserted", "tup_updated", "deadlocks"]


def pg_counters(engine: Engine, database: str) -> dict[str, int]:
    with engine.connect() as connection:
        row = connection.execute(
            text(f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = :name"),  # noqa: S608 - constants
            {"name": database},
        ).one()
    return dict(zip(PG_COUNTERS, (int(v) for v in row), strict=True))


# --------------------------------------------------------------------------------------------
# The clients


@dataclass
class Renewal:
    ok: bool
    line_id: int
    order_id: int | None = None
    order_s: float | None = None
    pay_s: float | None = None
    return_s: float | None = None
    total_s: float | None = None
    error: str | None = None
    at: float = field(default_factory=time.perf_counter)  # when it ended
    # (statements, BEGIN…COMMIT transactions, statements run on their own without BEGIN) per step,
    # from the counting pass's response headers
    counts: list[tuple[int, int, int]] = field(default_factory=list)


def sql_counts(response: httpx.Response) -> tuple[int, int, int]:
    return (
        int(response.headers.get(STATEMENTS_HEADER, -1)),
        int(response.headers.get(TRANSACTIONS_HEADER, -1)),
        int(response.headers.get(AUTOCOMMIT_HEADER, -1)),
    )


def error_of(step: str, response: httpx.Response) -> str:
    code = ""
    with contextlib.suppress(Exception):
        code = " " + str(response.json()["error"]["code"])
    return f"{step}: HTTP {response.status_code}{code}"


def renew(client: httpx.Client, line_id: int, token: str) -> Renewal:
    auth = {"Authorization": f"Bearer {token}"}
    body = {"line_id": line_id, "plan_code": PLAN_CODE, "payment_method": "card"}
    step = "order"
    try:
        started = time.perf_counter()
        created = client.post("/api/v1/orders", json=body, headers={**auth, "Idempotency-Key": uuid.uuid4().hex})
        ordered = time.perf_counter()
        if created.status_code != 201:
            return Renewal(False, line_id, error=error_of(step, created))
        order = created.json()
        payment = order["payments"][-1]
        if order["status"] != "payment_pending" or not payment.get("next_action"):
            return Renewal(False, line_id, order["id"], error=f"order: status {order['status']}, no next action")
        step = "pay"
        paid = client.post(
            urlsplit(payment["next_action"]["url"]).path, data={"card_number": CARD}, follow_redirects=False
        )
        paid_at = time.perf_counter()
        back = urlsplit(paid.headers.get("location", ""))
        if paid.status_code != 303 or back.path != f"/api/v1/payments/{payment['id']}/return":
            return Renewal(False, line_id, order["id"], error=error_of(step, paid) + f" -> {back.path or '-'}")
        step = "return"
        returned = client.get(back.path, headers=auth)
        finished = time.perf_counter()
        if returned.status_code != 200:
            return Renewal(False, line_id, order["id"], error=error_of(step, returned))
        final = returned.json()
        if final["status"] != "fulfilled" or not final.get("receipt_number"):
            return Renewal(False, line_id, order["id"], error=f"return: order {final['status']}")
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return Renewal(False, line_id, error=f"{step}: {type(exc).__name__}")
    counts = [sql_counts(created), sql_counts(paid), sql_counts(returned)]
    return Renewal(
        True,
        line_id,
        order["id"],
        ordered - started,
        paid_at - ordered,
        finished - paid_at,
        finished - started,
        counts=counts,
    )


class Feed:
    """Hands out line indices round robin until the count or the deadline is reached."""

    def __init__(self, start: int, count: int, deadline: float) -> None:
        self._next, self._end, self.deadline = start, start + count, deadline
        self._lock = threading.Lock()
        self.capped_by_time = False

    @property
    def next_index(self) -> int:
        with self._lock:
            return self._next

    def take(self) -> int | None:
        with self._lock:
            if self._next >= self._end:
                return None
            if time.perf_counter() >= self.deadline:
                self.capped_by_time = True
                return None
            self._next += 1
            return self._next - 1


def run_clients(
    base_url: str, world: World, tokens: list[str], feed: Feed, concurrency: int
) -> tuple[list[Renewal], float]:
    results: list[list[Renewal]] = [[] for _ in range(concurrency)]

    def client_loop(slot: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30.0, headers={"accept-language": "en"}) as client:
            while (n := feed.take()) is not None:
                index = n % len(world.line_ids)
                results[slot].append(renew(client, world.line_ids[index], tokens[index]))

    threads = [threading.Thread(target=client_loop, args=(slot,), name=f"client-{slot}") for slot in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for rs in results for r in rs], time.perf_counter() - started


def issue_tokens(base_url: str, phones: list[str], concurrency: int) -> list[str]:
    tokens: list[str] = [""] * len(phones)
    failures: list[str] = []

    def work(slot: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            for i in range(slot, len(phones), concurrency):
                response = client.post(
                    "/api/v1/auth/tokens", json={"phone": phones[i], "password": PASSWORD, "name": "bench"}
                )
                if response.status_code != 201:
                    failures.append(error_of(f"token for {phones[i]}", response))
                    return
                tokens[i] = response.json()["token"]

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"could not take bearer tokens: {failures[:3]}")
    return tokens


# --------------------------------------------------------------------------------------------
# py-spy


@dataclass
class Profile:
    samples: Counter[tuple[str, ...]] = field(default_factory=Counter)
    seconds: float = 0.0
    rate: int = 100
    error: str | None = None


def start_py_spy(pid: int, seconds: float, rate: int, out: Path) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return None
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate)]
    command.append("--gil")  # only the thread holding the GIL: where the server's Python CPU goes
    command.append("--subprocesses")  # with --server-workers, the samples are in uvicorn's workers
    return subprocess.Popen(  # noqa: S603 - our own command line
        [*command, "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def read_profile(path: Path, seconds: float, rate: int) -> Profile:
    profile = Profile(seconds=seconds, rate=rate)
    for row in path.read_text(errors="replace").splitlines():
        stack, _, count = row.rpartition(" ")
        if stack and count.isdigit():  # frames are "function (file:line)"; lines are dropped
            frames = tuple(
                f"{frame.rpartition(':')[0]})" if frame.endswith(")") else frame for frame in stack.split(";")
            )
            profile.samples[frames] += int(count)
    return profile


# Where a sample is, by the innermost Duckline frame (leaf first); the rest is the HTTP stack.
PHASES = [
    ("auth: bearer token -> account (deps.optional_account)", ("web/deps.py", "accounts/service.py")),
    ("receipts.issue: counter row + receipt insert", ("billing/receipts.py",)),
    ("fulfil: buckets, ledger, line, events", ("billing/fulfilment.py", "usage/balances.py", "messaging/events.py")),
    ("payments.apply: lock order + payment, state", ("billing/payments.py",)),
    ("sandbox provider: its own transactions", ("billing/providers/sandbox.py",)),
    ("sandbox hosted page route (billing/providers/sandbox_pages.py)", ("billing/providers/sandbox_pages.py",)),
    (
        "orders.create: locks, quote, limits, insert",
        (
            "billing/orders.py",
            "catalog/promotions.py",
            "catalog/service.py",
            "lines/service.py",
            "billing/pricing.py",
            "billing/renewal.py",
            "billing/order_states.py",
        ),
    ),
    ("checkout glue: order_renewal/start_attempt/refresh", ("billing/checkout.py", "billing/providers/gateway.py")),
    ("routes + order_out (response building)", ("/api/", "billing/schemas.py", "money.py", "i18n.py")),
    ("Database.transaction: session, BEGIN/COMMIT", ("db/engine.py",)),
    ("Runtime.unit_of_work", ("duckline/runtime.py",)),
    ("event loop: FastAPI/Starlette under the http middleware (web/app.py)", ("web/app.py",)),
    ("error mapping", ("web/errors.py",)),
]
LIBRARIES = [
    ("SQLAlchemy ORM (session, flush, loading)", ("sqlalchemy/orm/",)),
    ("SQLAlchemy Core (compile, SQL constructs)", ("sqlalchemy/sql/",)),
    ("SQLAlchemy engine (execute, results, pool)", ("sqlalchemy/engine/", "sqlalchemy/pool/")),
    ("SQLAlchemy other", ("sqlalchemy/",)),
    ("psycopg (driver)", ("psycopg/", "psycopg_binary/")),
    ("sqlite3 (driver)", ("sqlite3/",)),
    ("pydantic (validation, serialisation)", ("pydantic/", "pydantic_core/")),
    ("FastAPI (routing, params, response)", ("fastapi/",)),
    ("Starlette", ("starlette/",)),
    ("uvicorn + h11 (HTTP parsing, access log)", ("uvicorn/", "h11/")),
    ("python-multipart (form)", ("multipart/", "python_multipart/")),
    ("anyio (thread pool hand-off)", ("anyio/",)),
    ("asyncio", ("asyncio/", "selectors.py")),
    ("logging", ("logging/",)),
    ("json", ("json/",)),
    ("argon2", ("argon2/",)),
    ("Duckline code", ("duckline/",)),
    ("threading / queue", ("threading.py", "queue.py")),
]


def frame_file(frame: str) -> str:
    return frame.rpartition("(")[2].rstrip(")").replace("\\", "/")


def classify(frame_path: str, table: list[tuple[str, tuple[str, ...]]]) -> str | None:
    for label, needles in table:
        if any(needle in frame_path for needle in needles):
            return label
    return None


def phase_of(stack: tuple[str, ...]) -> str:
    for frame in reversed(stack):
        path = frame_file(frame)
        if "duckline/" in path and "duckline/cli.py" not in path:  # cli.serve is the event loop's root
            return classify(path, PHASES) or f"other Duckline code ({path.rpartition('duckline/')[2]})"
    leaf = classify(frame_file(stack[-1]), LIBRARIES) if stack else None
    return f"(no Duckline frame) {leaf or 'other'}"


def profile_report(profile: Profile, renewals: int) -> list[str]:
    total = sum(profile.samples.values())
    if not total:
        return ["  py-spy: no samples" + (f" ({profile.error})" if profile.error else "")]
    per_renewal = 1000 * total / profile.rate / max(renewals, 1)
    out = [
        f"  py-spy on the server: {total:,} samples of busy threads at {profile.rate} Hz over {profile.seconds:g} s"
        f" = {total / profile.rate / profile.seconds:.2f} threads on CPU on average; idle threads (waiting for"
        " the database, a lock, the GIL or a request) are not sampled.",
        f"  By the innermost Duckline frame (share of CPU samples; ≈ ms of server CPU per renewal, from"
        f" {renewals:,} renewals in the window at {per_renewal:.2f} ms total):",
    ]
    phases: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in profile.samples.items():
        phases[phase_of(stack)] += count
        leaf = stack[-1] if stack else "?"
        libraries[classify(frame_file(leaf), LIBRARIES) or f"other: {frame_file(leaf) or leaf}"] += count
        own[leaf] += count
        for frame in set(stack):
            inclusive[frame] += count
    for label, count in phases.most_common():
        out.append(f"    {100 * count / total:5.1f}%  {per_renewal * count / total:6.2f} ms  {label}")
    out.append("  By the library running at the sampled instant (leaf frame):")
    for label, count in libraries.most_common(14):
        out.append(f"    {100 * count / total:5.1f}%  {label}")
    out.append("  Top functions by own time:")
    for frame, count in own.most_common(15):
        out.append(f"    {100 * count / total:5.1f}%  {frame}")
    out.append("  Top Duckline functions, inclusive:")
    duckline_frames = [(f, c) for f, c in inclusive.most_common() if "duckline/" in frame_file(f)]
    for frame, count in duckline_frames[:22]:
        out.append(f"    {100 * count / total:5.1f}%  {frame}")
    return out


def count_sql(server: Server, env: dict[str, str], world: World, tokens: list[str], start: int) -> list[Renewal]:
    """A few renewals, one at a time, through a second server started with DUCKLINE_SQL_COUNTS=1
    on the same database, after the timed run: statements and transactions per step."""
    port = free_port()
    counting_env = {**env, **COUNTING_ENV, "DUCKLINE_PORT": str(port), "DUCKLINE_BASE_URL": f"http://127.0.0.1:{port}"}
    directory = server.log_path.parent / "counting"
    directory.mkdir(exist_ok=True)
    counting = Server(counting_env, port, directory, 1)
    try:
        counting.wait_ready()
        renewals, _ = run_clients(counting.base_url, world, tokens, Feed(start, COUNTED_RENEWALS, float("inf")), 1)
    finally:
        counting.stop()
    return renewals


def sql_report(renewals: list[Renewal]) -> list[str]:
    counted = [r for r in renewals if r.ok and r.counts and min(min(c) for c in r.counts) >= 0]
    if not counted:
        failed = Counter(r.error for r in renewals if not r.ok)
        return [f"  SQL per request:     not counted ({len(renewals)} counting renewals; {dict(failed)})"]
    out = [
        f"  SQL per request (counting pass: {len(counted)} renewals one at a time through a server with"
        " DUCKLINE_SQL_COUNTS=1; mean statements incl. SAVEPOINTs; BEGIN…COMMIT transactions; of the"
        " statements, those run on their own without BEGIN/COMMIT, each its own transaction to PostgreSQL):"
    ]

    def row(label: str, counts: list[tuple[int, int, int]]) -> str:
        statements, transactions, alone = (sum(c[i] for c in counts) / len(counted) for i in range(3))
        return (
            f"    {label:<34}{statements:6.1f} statements {transactions:5.1f} transactions"
            f" {alone:5.1f} statements on their own"
        )

    for step, label in enumerate(STEPS):
        out.append(row(label, [r.counts[step] for r in counted]))
    out.append(row("whole renewal", [c for r in counted for c in r.counts]))
    return out


def drain_webhooks(engine: Engine, limit: float) -> tuple[int, float]:
    """Wait (at most `limit` seconds) until the worker has sent every webhook the sandbox owes."""
    started = time.perf_counter()
    while True:
        with engine.connect() as connection:
            left = connection.execute(
                select(func.count()).select_from(SandboxWebhook).where(SandboxWebhook.deliveries == 0)
            ).scalar_one()
        waited = time.perf_counter() - started
        if left == 0 or waited >= limit:
            return int(left), waited
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------
# Checks afterwards


@dataclass
class Checks:
    lines: list[tuple[bool, str]] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.lines.append((ok, what))

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.lines)


def verify(engine: Engine, renewals: list[Renewal], webhooks: bool) -> Checks:
    checks = Checks()
    succeeded = [r for r in renewals if r.ok]
    ok_orders = {r.order_id for r in succeeded if r.order_id is not None}
    with engine.connect() as connection:
        by_status = dict(connection.execute(select(Order.status, func.count()).group_by(Order.status)).all())
        receipts_per_order = dict(
            connection.execute(
                select(Receipt.order_id, func.count()).where(Receipt.kind == "receipt").group_by(Receipt.order_id)
            ).all()
        )
        series = connection.execute(
            select(Receipt.series, func.count(), func.min(Receipt.number), func.max(Receipt.number))
            .where(Receipt.kind == "receipt")
            .group_by(Receipt.series)
        ).all()
        fulfilled = int(by_status.get(OrderStatus.FULFILLED, 0))
        succeeded_payments = connection.execute(
            select(func.count()).select_from(Payment).where(Payment.status == PaymentStatus.SUCCEEDED)
        ).scalar_one()
        sandbox_succeeded = connection.execute(
            select(func.count()).select_from(SandboxPayment).where(SandboxPayment.status == PaymentStatus.SUCCEEDED)
        ).scalar_one()
        granted = connection.execute(
            select(func.count()).select_from(Bucket).where(Bucket.source_ref.like("order:%"))
        ).scalar_one()
        if webhooks:
            owed, pending = connection.execute(
                select(func.count(), func.count().filter(SandboxWebhook.deliveries == 0)).select_from(SandboxWebhook)
            ).one()
            events = connection.execute(select(func.count()).select_from(WebhookEvent)).scalar_one()
            changed = connection.execute(
                select(func.count()).select_from(WebhookEvent).where(~WebhookEvent.outcome.like("%no change%"))
            ).scalar_one()
            checks.info.append(
                f"webhooks: sandbox owed {owed:,}, {pending:,} still undelivered when the server stopped;"
                f" {events:,} distinct events recorded, {changed:,} of them changed anything"
            )
        if inspect(connection).has_table("notifications"):  # the outbox: renewals queue a message each
            sent = connection.execute(
                text("SELECT channel, template, status, count(*) FROM notifications GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
            ).all()
            checks.info.append(
                "notifications queued during the run: "
                + (", ".join(f"{c} {t} {s} {n:,}" for c, t, s, n in sent) if sent else "none")
            )
    statuses = ", ".join(f"{getattr(s, 'value', s)} {n:,}" for s, n in sorted(by_status.items(), key=lambda x: str(x)))
    checks.info.append(f"orders in the database: {statuses}")
    wrong = sorted(o for o in ok_orders if receipts_per_order.get(o) != 1)
    checks.check(
        not wrong and len(ok_orders) == len(succeeded),
        f"each of the {len(succeeded):,} successful renewals has exactly one receipt"
        + (f" (wrong: orders {wrong[:5]})" if wrong else ""),
    )
    extra = sum(n for n in receipts_per_order.values()) - len(ok_orders)
    checks.check(extra == 0, f"no other receipts ({extra} extra)")
    checks.check(
        fulfilled == len(succeeded), f"fulfilled orders {fulfilled:,} == successful renewals {len(succeeded):,}"
    )
    checks.check(
        succeeded_payments == sandbox_succeeded == len(succeeded),
        f"succeeded payments {succeeded_payments:,}, sandbox captures {sandbox_succeeded:,}",
    )
    checks.check(granted == len(ALLOWANCES) * fulfilled, f"buckets granted by orders {granted:,} == 3 x fulfilled")
    gapless = all(count == high - low + 1 and low == 1 for _, count, low, high in series)
    checks.check(gapless, "receipt numbers gapless from 1: " + ", ".join(f"{s} 1..{h}" for s, _, _, h in series))
    return checks


# --------------------------------------------------------------------------------------------
# The run


def access_log(log: str) -> Counter[tuple[str, str]]:
    """uvicorn's access log lines, `... - "POST /api/v1/orders HTTP/1.1" 201 Created`, by route."""
    found: Counter[tuple[str, str]] = Counter()
    for row in log.splitlines():
        match = re.search(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})', row)
        if match:
            path = re.sub(r"/sbx_\w+", "/{ref}", re.sub(r"/\d+(?=/|$)", "/{id}", match[2].split("?")[0]))
            found[(f"{match[1]} {path}", match[3])] += 1
    return found


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_row(label: str, values: list[float]) -> str:
    if not values:
        return f"    {label:<34} -"
    ms = [1000 * v for v in values]
    return (
        f"    {label:<34}{percentile(ms, 50):>8.1f}{percentile(ms, 95):>8.1f}{percentile(ms, 99):>8.1f}"
        f"{max(ms):>8.1f}{sum(ms) / len(ms):>8.1f}"
    )


def run_database(db: str, args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="duckline_bench_") as tmp:
        database = sqlite_database(tmp) if db == "sqlite" else postgres_database(args.postgres_url)
        with database as (url, pg_name):
            setup_started = time.perf_counter()
            engine = make_engine(url, **({"pool_size": 2} if pg_name else {}))
            try:
                upgrade(engine)
                world = populate(engine, args.lines)
                port = free_port()
                env = server_env(url, port, Path(tmp) / "var", args.webhooks, args.server_env)
                server = Server(env, port, Path(tmp), args.server_workers)
                try:
                    return measure(db, args, engine, pg_name, world, server, env, setup_started)
                finally:
                    server.stop()
            finally:
                engine.dispose()


def measure(
    db: str,
    args: argparse.Namespace,
    engine: Engine,
    pg_name: str | None,
    world: World,
    server: Server,
    env: dict[str, str],
    setup_started: float,
) -> bool:
    server.wait_ready()
    server_started = time.perf_counter()
    tokens = issue_tokens(server.base_url, world.phones, args.concurrency)
    token_seconds = time.perf_counter() - server_started
    warmup, _ = run_clients(server.base_url, world, tokens, Feed(0, args.warmup, float("inf")), args.concurrency)
    setup_seconds = time.perf_counter() - setup_started
    version = server_version(engine)

    # The timed run.
    pg_before = pg_counters(engine, pg_name) if pg_name else {}
    before = cpu_snapshot(server.pid, backend_pids(engine, pg_name))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    feed = Feed(args.warmup, args.renewals, started + args.seconds)
    spy, spy_out, spy_window = None, Path(tempfile.gettempdir()) / f"duckline_spy_{server.pid}.txt", (0.0, 0.0)
    profile = Profile()
    if args.py_spy:
        delay = min(2.0, args.seconds / 4)
        seconds = max(1.0, min(args.py_spy, args.seconds - delay - 1))

        def delayed_spy() -> None:
            nonlocal spy, spy_window
            time.sleep(delay)
            spy_window = (time.perf_counter(), seconds)
            spy = start_py_spy(server.pid, seconds, 100, spy_out)

        spy_thread = threading.Thread(target=delayed_spy, daemon=True)
        spy_thread.start()
    timed, wall = run_clients(server.base_url, world, tokens, feed, args.concurrency)
    after = cpu_snapshot(server.pid, backend_pids(engine, pg_name))
    load_after = os.getloadavg()[0]
    if args.py_spy:
        spy_thread.join()
        if spy is None:
            profile.error = "py-spy not found: .venv/bin/pip install py-spy"
        else:
            _, stderr = spy.communicate(timeout=args.py_spy + 30)
            if spy.returncode == 0 and spy_out.exists():
                profile = read_profile(spy_out, spy_window[1], 100)
            else:
                profile.error = f"py-spy exited {spy.returncode}: {stderr.decode(errors='replace').strip()[-300:]}"
            spy_out.unlink(missing_ok=True)
    drained = drain_webhooks(engine, args.seconds) if args.webhooks else None
    peak_rss, rss = server.peak_rss_mib()
    server.stop()
    pg_after = pg_counters(engine, pg_name) if pg_name else {}
    counted = count_sql(server, env, world, tokens, feed.next_index)
    checks = verify(engine, warmup + timed + counted, args.webhooks)

    # Report.
    ok = [r for r in timed if r.ok]
    errors = Counter(r.error for r in timed if not r.ok)
    rate = len(ok) / wall if wall else 0.0
    p99 = 1000 * percentile([r.total_s for r in ok if r.total_s is not None], 99) if ok else float("inf")
    elapsed = after.at - before.at
    busy = (after.machine[0] - before.machine[0]) / max(after.machine[1] - before.machine[1], 1)
    cpus = len(os.sched_getaffinity(0))
    server_cpu = after.server - before.server
    client_cpu = after.client - before.client
    backend_cpu = sum(v - before.backends.get(pid, 0.0) for pid, v in after.backends.items())
    per = max(len(ok), 1)
    log = server.log_text()
    tracebacks = log.count("Traceback (most recent call last)")
    responses = access_log(log)
    server_errors = sum(n for (_, status), n in responses.items() if status.startswith("5"))
    renewals_done = len(timed)
    capped = "the --seconds cap" if feed.capped_by_time else "--renewals"
    processes = (
        "one uvicorn process"
        if args.server_workers == 1
        else f"{args.server_workers} uvicorn worker processes (CPU summed over them; memory is the parent's)"
    )
    out = [
        f"== {db}: {version}; load average {load_before:.2f} before, {load_after:.2f} after the timed run"
        f" ({cpus} CPUs, shared with the server, its database and anything else running)",
        f"  command:             {reproduce_command(args, db)}",
        f"  server:              `duckline serve` pid {server.pid} on 127.0.0.1:{server.port}, {processes};"
        f" env {shown_env(env)}",
        "                       DUCKLINE_PASSWORD_TIME_COST=1 / _MEMORY_KIB=1024 (defaults 3 / 65536) only speed up"
        " set-up (one argon2 verify per token); no timed request runs argon2.",
        "                       "
        + (
            "--webhooks: the in-process worker delivers each sandbox webhook twice during the run."
            if args.webhooks
            else "No worker (environment test): the sandbox's webhooks are queued but not delivered;"
            " the return URL confirms each payment."
        ),
        f"  set-up (not timed):  {args.lines:,} subscribers with one active line each (plan {PLAN_CODE},"
        f" HK${PLAN_PRICE / 100:.0f}), {args.lines:,} bearer tokens via POST /api/v1/auth/tokens in"
        f" {token_seconds:.1f} s, {len(warmup)} warm-up renewals ({sum(not r.ok for r in warmup)} failed);"
        f" {setup_seconds:.1f} s in all",
        f"  renewals:            {len(ok):,} ok, {renewals_done - len(ok):,} failed, in {wall:.2f} s at concurrency"
        f" {args.concurrency} (stopped by {capped}); at most"
        f" {-(-(args.warmup + renewals_done) // args.lines)} per line (cap {RENEWALS_PER_LINE_MONTH}/month)",
        f"  throughput:          {rate:,.1f} renewals/s  ({3 * rate:,.0f} requests/s)"
        + ("  [server profiled by py-spy meanwhile]" if args.py_spy else ""),
        f"  latency (ms):        {'':<24}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'mean':>8}   ({len(ok):,} ok)",
        latency_row("whole renewal", [r.total_s for r in ok if r.total_s is not None]),
        latency_row("1 POST /api/v1/orders", [r.order_s for r in ok if r.order_s is not None]),
        latency_row("2 POST /sandbox/checkout/{ref}", [r.pay_s for r in ok if r.pay_s is not None]),
        latency_row("3 GET /payments/{id}/return", [r.return_s for r in ok if r.return_s is not None]),
        f"  errors:              {sum(errors.values())}"
        + (" — " + "; ".join(f"{n} x {e}" for e, n in errors.most_common(6)) if errors else "")
        + f"; server log: {server_errors} responses 5xx, {tracebacks} tracebacks",
        f"  CPU over the run:    machine {100 * busy:.0f}% of {cpus} CPUs; server process"
        f" {100 * server_cpu / elapsed:.0f}% of one CPU ({1000 * server_cpu / per:.2f} ms per renewal);"
        f" clients (this process) {100 * client_cpu / elapsed:.0f}% ({1000 * client_cpu / per:.2f} ms per renewal)"
        + (
            f"; PostgreSQL backends {100 * backend_cpu / elapsed:.0f}% ({1000 * backend_cpu / per:.2f} ms per renewal)"
            if pg_name
            else ""
        ),
        f"  server memory:       peak RSS {peak_rss:.1f} MiB (VmHWM), {rss:.1f} MiB at the end",
        "  access log (whole run, set-up included): "
        + "; ".join(f"{route} {status} x{n:,}" for (route, status), n in sorted(responses.items())),
    ]
    if pg_name:
        delta = {k: pg_after[k] - pg_before[k] for k in PG_COUNTERS}
        out.append(
            f"  PostgreSQL (≈, pg_stat_database): {delta['xact_commit'] / per:.1f} commits,"
            f" {delta['xact_rollback'] / per:.1f} rollbacks, {delta['tup_inserted'] / per:.1f} rows inserted,"
            f" {delta['tup_updated'] / per:.1f} updated per renewal; deadlocks {delta['deadlocks']}"
        )
    out += sql_report(counted)
    out.append(
        f"  server stop:         {'clean' if server.stopped_cleanly else 'KILLED after 20 s'}"
        f" (SIGINT, exit code {server.exit_code})"
    )
    if drained is not None:
        left, waited = drained
        checks.info.append(f"after the run, waited {waited:.1f} s for the worker's webhook backlog: {left} left")
    if args.webhooks:
        failed = [row for row in log.splitlines() if "webhook to " in row]
        checks.info.append(
            f"worker: {len(failed)} webhook posts failed" + (f", e.g. {failed[0].strip()[:160]}" if failed else "")
        )
    out += [f"  {line}" for line in checks.info]
    out += [f"  {'PASS' if ok_ else 'FAIL'}  {what}" for ok_, what in checks.lines]
    out.append(f"  {'PASS' if not errors and not tracebacks else 'FAIL'}  no failed renewals, no server tracebacks")
    if db == "postgresql":
        met = rate >= TARGET_RATE and p99 < TARGET_P99_MS
        out.append(
            f"  target (>= {TARGET_RATE:.0f} renewals/s with p99 < {TARGET_P99_MS:.0f} ms on PostgreSQL):"
            f" {'MET' if met else 'NOT MET'} ({rate:.1f}/s, p99 {p99:.1f} ms)"
        )
    if args.py_spy:
        spy_start, spy_seconds = spy_window
        out += profile_report(profile, sum(1 for r in ok if spy_start <= r.at <= spy_start + spy_seconds))
    if tracebacks:
        first = log.index("Traceback (most recent call last)")
        out.append("  first server traceback:\n" + "\n".join("    " + x for x in log[first:].splitlines()[:30]))
    print("\n".join(out), flush=True)
    return checks.ok and not errors and not tracebacks and server.stopped_cleanly


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(
        f"duckline renewal benchmark (HTTP, sandbox provider): Python {platform.python_version()},"
        f" {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs; started {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
        " UTC",
        flush=True,
    )
    ok = True
    for db in databases:
        ok = run_database(db, args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
