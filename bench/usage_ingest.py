"""Usage records per second applied to balances by `duckline.usage.ingest.ingest`.

Each batch goes through the real service inside `Runtime.unit_of_work()`: one transaction per
batch, exactly as `POST /api/v1/usage/batches` does it. Set-up (not timed) migrates a throwaway
database and bulk-inserts a plan and N active lines with their buckets and "grant" ledger rows
(no registration: argon2 would take minutes). The timed run applies --records records in
batches of --batch, spread at random over the lines. Afterwards, also measured and checked:

* a replay of the first 10 batches (same record ids): must apply 0 records, all "duplicate",
  and leave the total of bucket `remaining` (and the ledger) unchanged;
* for 50 sampled lines, `balances.rebuild_remaining` (from the ledger) equals
  `projected_remaining` (the buckets).

With --streams N the timed run is N processes at once, each with its own connection pool and a
disjoint share of the lines (batch i goes to stream i mod N and uses only that stream's lines), as
several network elements reporting at the same time would; throughput is then all records over
the wall-clock time of the whole run.

Bounded: the timed run stops after --max-seconds per database (default 120) even if not all
records were applied. Touches nothing but loopback: a temp SQLite file, and a throwaway
`duckline_bench_<random>` database on a loopback PostgreSQL server, dropped at the end.

    .venv/bin/python bench/usage_ingest.py --db both
    .venv/bin/python bench/usage_ingest.py --db postgresql --records 20000 --breakdown
    .venv/bin/python bench/usage_ingest.py --db postgresql --streams 2
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import ipaddress
import math
import multiprocessing
import os
import platform
import pstats
import random
import resource
import secrets
import shlex
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, Table, event, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from duckline.accounts.models import Account  # noqa: E402
from duckline.catalog.models import Plan, PlanAllowance  # noqa: E402
from duckline.catalog.rules import Zone  # noqa: E402
from duckline.core.config import Settings  # noqa: E402
from duckline.db.engine import make_engine  # noqa: E402
from duckline.db.migrate import upgrade  # noqa: E402
from duckline.lines.models import Line  # noqa: E402
from duckline.runtime import Runtime  # noqa: E402
from duckline.usage import balances  # noqa: E402
from duckline.usage import ingest as usage  # noqa: E402
from duckline.usage.models import Bucket, LedgerEntry, UsageRecord  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SOURCE = "bench-network-element"
REPLAY_BATCHES = 10
REBUILD_SAMPLE = 50
MEMORY_BATCHES = 10
MB = 1024 * 1024

_accounts = cast(Table, Account.__table__)
_plans = cast(Table, Plan.__table__)
_allowances = cast(Table, PlanAllowance.__table__)
_lines = cast(Table, Line.__table__)
_buckets = cast(Table, Bucket.__table__)
_ledger = cast(Table, LedgerEntry.__table__)
_usage = cast(Table, UsageRecord.__table__)

# What the records look like: share of records, quantity drawn per record, and that quantity's
# mean and mean square (for sizing the allowances).
KINDS: list[tuple[usage.UsageKind, float, Callable[[random.Random], int]]] = [
    (usage.UsageKind.VOICE, 0.35, lambda rng: rng.randint(1, 600)),  # seconds
    (usage.UsageKind.SMS, 0.25, lambda rng: 1 if rng.random() < 0.9 else 2),
    (usage.UsageKind.DATA, 0.40, lambda rng: rng.randint(1, 20 * MB)),  # bytes
]
MOMENTS = {
    usage.UsageKind.VOICE: (300.5, (600 + 1) * (2 * 600 + 1) / 6),
    usage.UsageKind.SMS: (1.1, 1.3),
    usage.UsageKind.DATA: ((20 * MB + 1) / 2, (20 * MB + 1) * (2 * 20 * MB + 1) / 6),
}
# A line's use of one kind is a compound Poisson sum; its allowance is the mean plus this many
# standard deviations: most usage is charged, the busier lines run into overage.
ALLOWANCE_SIGMAS = 1.0


# --------------------------------------------------------------------------------------------
# Options and reproduction


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--lines", type=int, default=10_000, help="active lines the records are spread over")
    parser.add_argument("--batch", type=int, default=1_000, help="records per ingest call (one transaction)")
    parser.add_argument("--records", type=int, default=100_000, help="records in the timed run")
    parser.add_argument("--postgres-url", default=DEFAULT_PG, help="a loopback server; a throwaway database is made")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--max-seconds", type=float, default=120.0, help="cap on the timed run per database (stops early)"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time each statement of ingest (adds a little overhead to the timed run)",
    )
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="cProfile N extra batches and print it")
    parser.add_argument(
        "--streams", type=int, default=1, help="processes ingesting at once, each on its own share of the lines"
    )
    args = parser.parse_args(argv)
    if args.lines < 1 or args.batch < 1 or args.records < 1:
        parser.error("--lines, --batch and --records must be positive")
    if args.batch > usage.MAX_BATCH:
        parser.error(f"--batch is limited to {usage.MAX_BATCH} by the service")
    if args.max_seconds <= 0:
        parser.error("--max-seconds must be positive")
    if not 1 <= args.streams <= min(args.lines, 64):
        parser.error("--streams must be between 1 and 64 (and no more than --lines)")
    if args.streams > 1 and args.breakdown:
        parser.error("--breakdown times one stream only: use it without --streams")
    if args.db in ("postgresql", "both"):
        check_loopback(parser, args.postgres_url)
    return args


def check_loopback(parser: argparse.ArgumentParser, url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        parser.error("--postgres-url must be a postgresql:// URL")
    host = parsed.host or ""
    if host in ("", "localhost") or host.startswith("/"):  # unix socket or loopback name
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    parser.error(f"--postgres-url must point at a loopback server, not {host!r}")


def reproduce_command(args: argparse.Namespace, db: str) -> str:
    parts = [
        ".venv/bin/python",
        "bench/usage_ingest.py",
        "--db",
        db,
        "--lines",
        str(args.lines),
        "--batch",
        str(args.batch),
        "--records",
        str(args.records),
        "--seed",
        str(args.seed),
        "--max-seconds",
        f"{args.max_seconds:g}",
    ]
    if args.streams > 1:
        parts += ["--streams", str(args.streams)]
    if db == "postgresql":
        parts += ["--postgres-url", make_url(args.postgres_url).render_as_string(hide_password=True)]
    if args.breakdown:
        parts.append("--breakdown")
    if args.cprofile:
        parts += ["--cprofile", str(args.cprofile)]
    return shlex.join(parts)


# --------------------------------------------------------------------------------------------
# Databases


@contextlib.contextmanager
def sqlite_database() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="duckline_bench_") as tmp:
        yield f"sqlite:///{tmp}/bench.db", tmp


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[tuple[str, str]]:
    server = make_url(server_url)
    query = dict(server.query)
    query.setdefault("connect_timeout", "5")
    server = server.set(query=query)
    name = f"duckline_bench_{secrets.token_hex(5)}"
    admin = make_engine(server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT", pool_size=1)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        # A statement that hangs is an error, not a stuck benchmark.
        query["options"] = "-c statement_timeout=60000 -c lock_timeout=30000"
        url = server.set(database=name, query=query).render_as_string(hide_password=False)
        with tempfile.TemporaryDirectory(prefix="duckline_bench_") as tmp:
            yield url, tmp
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def server_version(engine: Engine) -> str:
    if engine.dialect.name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with engine.connect() as connection:
        return "PostgreSQL " + str(connection.execute(text("SHOW server_version")).scalar_one()).split()[0]


# --------------------------------------------------------------------------------------------
# Set-up: a plan and active lines with buckets and grants, straight into the tables


@dataclass
class World:
    msisdns: list[str]
    line_ids: list[int]
    valid_from: datetime
    valid_until: datetime
    started_before: datetime  # records start between valid_from and this (fixed, so replays match)
    allowance: dict[usage.UsageKind, int]


def allowances_for(args: argparse.Namespace) -> dict[usage.UsageKind, int]:
    per_line = args.records / args.lines
    allowance = {}
    for kind, share, _ in KINDS:
        expected = per_line * share  # records of this kind per line
        mean, square = MOMENTS[kind]
        allowance[kind] = max(1, math.ceil(expected * mean + ALLOWANCE_SIGMAS * math.sqrt(expected * square)))
    return allowance


def populate(engine: Engine, args: argparse.Namespace) -> World:
    now = datetime.now(UTC)
    valid_from, valid_until = now - timedelta(days=1), now + timedelta(days=30)
    allowance = allowances_for(args)
    with engine.begin() as connection:
        plan_id = connection.execute(
            insert(_plans).returning(_plans.c.id),
            {
                "code": "bench-plan",
                "kind": "plan",
                "status": "active",
                "names": {"en": "Bench", "zh_Hant": "Bench", "zh_Hans": "Bench"},
                "descriptions": {"en": "Bench", "zh_Hant": "Bench", "zh_Hans": "Bench"},
                "price_amount": 8800,
                "currency": "HKD",
                "validity_days": 30,
                "validity_months": 0,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        connection.execute(
            insert(_allowances),
            [
                {"plan_id": plan_id, "unit": kind.unit.value, "zone": Zone.HK.value, "amount": amount}
                for kind, amount in allowance.items()
            ],
        )
        # One subscriber account per line (no person: account.person_id is nullable).
        connection.execute(
            insert(_accounts),
            [
                {
                    "phone": f"+8526{n:07d}",
                    "phone_verified_at": now,
                    "password_hash": "!bench",
                    "role": "subscriber",
                    "language": "en",
                    "timezone": "Asia/Hong_Kong",
                    "created_at": now,
                }
                for n in range(args.lines)
            ],
        )
        account_of = dict(connection.execute(select(_accounts.c.phone, _accounts.c.id)).all())
        connection.execute(
            insert(_lines),
            [
                {
                    "account_id": account_of[f"+8526{n:07d}"],
                    "msisdn": f"+8525{n:07d}",
                    "status": "active",
                    "plan_id": plan_id,
                    "period_start": valid_from,
                    "expires_at": valid_until,
                    "voicemail": False,
                    "caller_id": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(args.lines)
            ],
        )
        line_of = dict(connection.execute(select(_lines.c.msisdn, _lines.c.id)).all())
        msisdns = [f"+8525{n:07d}" for n in range(args.lines)]
        line_ids = [line_of[m] for m in msisdns]
        connection.execute(
            insert(_buckets),
            [
                {
                    "line_id": line_id,
                    "unit": kind.unit.value,
                    "zone": Zone.HK.value,
                    "initial": amount,
                    "remaining": amount,
                    "valid_from": valid_from,
                    "valid_until": valid_until,
                    "source": "plan",
                    "source_ref": f"activation:{line_id}",
                    "created_at": now,
                }
                for line_id in line_ids
                for kind, amount in allowance.items()
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
    # Fresh tables have no statistics (and autovacuum may be off): give the planner what a
    # live database would have.
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
    return World(msisdns, line_ids, valid_from, valid_until, now - timedelta(minutes=1), allowance)


# --------------------------------------------------------------------------------------------
# Records, generated per batch from the seed (outside the timer)


def stream_of(args: argparse.Namespace, index: int) -> int:
    return index % args.streams


def make_batch(world: World, args: argparse.Namespace, index: int, id_prefix: str = "r") -> list[usage.UsageInput]:
    """Batch `index`: records on the lines of its stream (every line when there is one stream)."""
    rng = random.Random(args.seed * 1_000_003 + index)
    msisdns = world.msisdns[stream_of(args, index) :: args.streams]
    kinds = [k for k, _, _ in KINDS]
    weights = [w for _, w, _ in KINDS]
    quantity = {k: q for k, _, q in KINDS}
    span = (world.started_before - world.valid_from).total_seconds()
    records = []
    for n in range(args.batch):
        kind = rng.choices(kinds, weights)[0]
        records.append(
            usage.UsageInput(
                record_id=f"{id_prefix}{args.seed}-{index:06d}-{n:05d}",
                msisdn=msisdns[rng.randrange(len(msisdns))],
                kind=kind,
                zone=Zone.HK,
                quantity=quantity[kind](rng),
                started_at=world.valid_from + timedelta(seconds=rng.uniform(1, span)),
            )
        )
    return records


def batch_sizes(args: argparse.Namespace) -> list[int]:
    full, rest = divmod(args.records, args.batch)
    return [args.batch] * full + ([rest] if rest else [])


# --------------------------------------------------------------------------------------------
# Optional statement timing (--breakdown)


STATEMENT_KINDS = [
    ("lines lookup (SELECT lines)", "SELECT lines.id"),
    ("bucket lock (SELECT buckets ... FOR UPDATE)", "SELECT buckets.id"),
    ("usage insert (ON CONFLICT DO NOTHING RETURNING)", "INSERT INTO usage_records"),
    ("bucket update (UPDATE buckets)", "UPDATE buckets"),
    ("ledger insert (INSERT INTO ledger_entries)", "INSERT INTO ledger_entries"),
    ("repeat lookup (SELECT usage_records)", "SELECT usage_records"),
]


def statement_kind(sql: str) -> str:
    head = sql.lstrip()[:60]
    for label, prefix in STATEMENT_KINDS:
        if head.startswith(prefix):
            return label
    return "other: " + head.split("\n")[0][:40]


@dataclass
class Breakdown:
    """Per statement kind: time in Connection.execute (SQLAlchemy compile and bind processing,
    the driver, the server and the round trips) and, inside it, time in cursor.execute /
    executemany (the driver, the server and the round trips)."""

    execute: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cursor: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cursor_calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ingest: float = 0.0
    commit: float = 0.0
    draw: float = 0.0
    draw_calls: int = 0
    batches: int = 0

    def attach(self, engine: Engine) -> Callable[[], None]:
        stack: list[float] = []

        def before_execute(conn: Any, clauseelement: Any, *rest: Any) -> None:
            stack.append(time.perf_counter())

        def after_execute(conn: Any, clauseelement: Any, multiparams: Any, params: Any, opts: Any, result: Any) -> None:
            started = stack.pop()
            sql = str(getattr(result.context, "statement", "") or "") if result is not None else ""
            self.execute[statement_kind(sql)] += time.perf_counter() - started

        def before_cursor(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            conn.info["bench_cursor_started"] = time.perf_counter()

        def after_cursor(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            kind = statement_kind(statement)
            self.cursor[kind] += time.perf_counter() - conn.info.pop("bench_cursor_started")
            self.cursor_calls[kind] += 1

        hooks: list[tuple[str, Callable[..., None]]] = [
            ("before_execute", before_execute),
            ("after_execute", after_execute),
            ("before_cursor_execute", before_cursor),
            ("after_cursor_execute", after_cursor),
        ]
        for name, hook in hooks:
            event.listen(engine, name, hook)
        original_draw = usage.balances.draw

        def timed_draw(*a: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return original_draw(*a, **kw)
            finally:
                self.draw += time.perf_counter() - started
                self.draw_calls += 1

        usage.balances.draw = timed_draw  # the module object, for this process only

        def detach() -> None:
            usage.balances.draw = original_draw
            for name, hook in hooks:
                event.remove(engine, name, hook)

        return detach

    def report(self) -> list[str]:
        n = max(self.batches, 1)
        out = [
            f"  per-batch breakdown over {self.batches} batches (ms per batch; 'driver+server' is inside"
            " cursor.execute/executemany,"
        ]
        out.append("  'SQLAlchemy' is compile + bind/result processing around it):")
        out.append(f"    {'step':<52}{'total':>9}{'driver+server':>15}{'SQLAlchemy':>12}{'cursor calls':>14}")
        statements = 0.0
        for label, _ in STATEMENT_KINDS:
            total, cur = self.execute.get(label, 0.0), self.cursor.get(label, 0.0)
            statements += total
            out.append(
                f"    {label:<52}{1000 * total / n:>9.2f}{1000 * cur / n:>15.2f}{1000 * (total - cur) / n:>12.2f}"
                f"{self.cursor_calls.get(label, 0) / n:>14.1f}"
            )
        for label in sorted(set(self.execute) - {k for k, _ in STATEMENT_KINDS}):
            out.append(f"    {label:<52}{1000 * self.execute[label] / n:>9.2f}")
            statements += self.execute[label]
        python = self.ingest - statements
        out.append(f"    {'Python in ingest outside statements':<52}{1000 * python / n:>9.2f}")
        out.append(
            f"    {'  of which balances.draw()':<52}{1000 * self.draw / n:>9.2f}"
            f"   ({self.draw_calls / n:.0f} calls/batch)"
        )
        out.append(f"    {'commit (+ BEGIN, session open/close)':<52}{1000 * self.commit / n:>9.2f}")
        out.append(f"    {'= batch':<52}{1000 * (self.ingest + self.commit) / n:>9.2f}")
        return out


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class Tally:
    records: int = 0
    applied: int = 0
    duplicate: int = 0
    conflict: int = 0
    rejected: int = 0
    charged: int = 0
    overage: int = 0
    with_overage: int = 0

    def add(self, outcome: usage.BatchOutcome) -> None:
        for r in outcome.records:
            self.records += 1
            setattr(self, r.status, getattr(self, r.status) + 1)
            self.charged += r.charged
            self.overage += r.overage
            self.with_overage += r.overage > 0


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def bucket_totals(runtime: Runtime) -> tuple[int, int]:
    with runtime.unit_of_work() as uow:
        remaining = uow.session.execute(select(func.coalesce(func.sum(_buckets.c.remaining), 0))).scalar_one()
        ledger = uow.session.execute(select(func.count()).select_from(_ledger)).scalar_one()
    return int(remaining), int(ledger)


@dataclass
class TimedRun:
    latencies: list[float]  # seconds per batch (ingest + commit)
    tally: Tally
    done: list[int]  # the batches applied
    seconds: float  # what throughput divides by
    capped: bool


def run_one_stream(
    args: argparse.Namespace, runtime: Runtime, world: World, sizes: list[int], breakdown: Breakdown | None
) -> TimedRun:
    """Batch after batch in this process; each batch's records are generated before its timer starts."""
    latencies: list[float] = []
    tally = Tally()
    capped = False
    run_started = time.perf_counter()
    for index, size in enumerate(sizes):
        if time.perf_counter() - run_started > args.max_seconds:
            capped = True
            break
        records = make_batch(world, args, index)[:size]
        started = time.perf_counter()
        with runtime.unit_of_work() as uow:
            outcome = usage.ingest(uow, SOURCE, records)
            ingested = time.perf_counter()
        finished = time.perf_counter()
        latencies.append(finished - started)
        if breakdown:
            breakdown.ingest += ingested - started
            breakdown.commit += finished - ingested
            breakdown.batches += 1
        tally.add(outcome)
    return TimedRun(latencies, tally, list(range(len(latencies))), sum(latencies), capped)


def stream_worker(
    args: argparse.Namespace,
    url: str,
    log_dir: Path,
    world: World,
    batches: list[tuple[int, int]],
    start: Any,
    results: Any,
) -> None:
    """One stream of --streams, in its own process: (index, size) batches, all generated up front."""
    runtime = Runtime(Settings(environment="test", database_url=url, log_dir=log_dir))
    try:
        work = [(index, make_batch(world, args, index)[:size]) for index, size in batches]
        with runtime.unit_of_work() as uow:  # a pooled connection before the clock starts
            uow.session.execute(select(1))
        latencies: list[float] = []
        done: list[int] = []
        tally = Tally()
        capped = False
        start.wait()
        run_started = time.perf_counter()
        for index, records in work:
            if time.perf_counter() - run_started > args.max_seconds:
                capped = True
                break
            started = time.perf_counter()
            with runtime.unit_of_work() as uow:
                outcome = usage.ingest(uow, SOURCE, records)
            latencies.append(time.perf_counter() - started)
            done.append(index)
            tally.add(outcome)
        results.put((latencies, tally, done, capped, None))
    except Exception as exc:  # reported by the parent, which then fails the run
        results.put(([], Tally(), [], False, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        runtime.close()


def run_streams(args: argparse.Namespace, url: str, log_dir: Path, world: World, sizes: list[int]) -> TimedRun:
    """--streams processes at once, released together; throughput over the wall-clock time of all."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(args.streams + 1)
    results = context.Queue()
    shares: list[list[tuple[int, int]]] = [[] for _ in range(args.streams)]
    for index, size in enumerate(sizes):
        shares[stream_of(args, index)].append((index, size))
    workers = [
        context.Process(target=stream_worker, args=(args, url, log_dir, world, share, start, results))
        for share in shares
    ]
    for worker in workers:
        worker.start()
    start.wait(timeout=600)
    started = time.perf_counter()
    run = TimedRun([], Tally(), [], 0.0, False)
    by_index: list[tuple[int, float]] = []
    errors = []
    for _ in workers:
        latencies, tally, done, capped, error = results.get(timeout=args.max_seconds + 600)
        by_index += zip(done, latencies, strict=True)
        run.capped = run.capped or capped
        for name in vars(run.tally):
            setattr(run.tally, name, getattr(run.tally, name) + getattr(tally, name))
        if error:
            errors.append(error)
    run.seconds = time.perf_counter() - started
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError("a stream failed: " + "; ".join(errors))
    by_index.sort()
    run.done, run.latencies = [i for i, _ in by_index], [t for _, t in by_index]
    return run


def run_database(db: str, args: argparse.Namespace) -> bool:
    database = sqlite_database() if db == "sqlite" else postgres_database(args.postgres_url)
    with database as (url, tmp):
        setup_started = time.perf_counter()
        engine = make_engine(url)
        upgrade(engine)
        world = populate(engine, args)
        engine.dispose()
        runtime = Runtime(Settings(environment="test", database_url=url, log_dir=Path(tmp) / "var"))
        try:
            return measure(db, args, runtime, world, time.perf_counter() - setup_started, url, Path(tmp) / "var")
        finally:
            runtime.close()


def measure(
    db: str, args: argparse.Namespace, runtime: Runtime, world: World, setup_seconds: float, url: str, log_dir: Path
) -> bool:
    engine = runtime.db.engine
    version = server_version(engine)
    sizes = batch_sizes(args)
    initial_remaining, _ = bucket_totals(runtime)
    breakdown = Breakdown() if args.breakdown else None
    detach = breakdown.attach(engine) if breakdown else None

    gc.collect()
    load_before = os.getloadavg()[0]
    if args.streams == 1:
        run = run_one_stream(args, runtime, world, sizes, breakdown)
    else:
        run = run_streams(args, url, log_dir, world, sizes)
    load_after = os.getloadavg()[0]
    if detach:
        detach()
    latencies, tally, timed, capped = run.latencies, run.tally, run.seconds, run.capped
    batches_done = len(run.done)

    # Memory: tracemalloc slows every allocation, so it runs on a few extra batches of fresh
    # records after the timed run rather than during it.
    tracemalloc.start()
    tracemalloc.reset_peak()
    for index in range(MEMORY_BATCHES):
        records = make_batch(world, args, index, id_prefix="m")
        with runtime.unit_of_work() as uow:
            usage.ingest(uow, SOURCE, records)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    profile_lines: list[str] = []
    if args.cprofile:
        profiler = cProfile.Profile()
        for index in range(args.cprofile):
            records = make_batch(world, args, index, id_prefix="p")
            profiler.enable()
            with runtime.unit_of_work() as uow:
                usage.ingest(uow, SOURCE, records)
            profiler.disable()
        profile_lines = profile_report(profiler, args.cprofile)

    # Replay of the first batches: same record ids, same content.
    before_remaining, before_ledger = bucket_totals(runtime)
    replay = Tally()
    replay_started = time.perf_counter()
    replayed = run.done[:REPLAY_BATCHES]
    replayed_batches = len(replayed)
    for index in replayed:
        records = make_batch(world, args, index)[: sizes[index]]
        with runtime.unit_of_work() as uow:
            replay.add(usage.ingest(uow, SOURCE, records))
    replay_seconds = time.perf_counter() - replay_started
    after_remaining, after_ledger = bucket_totals(runtime)
    replay_ok = (
        replay.applied == 0
        and replay.duplicate == replay.records
        and before_remaining == after_remaining
        and before_ledger == after_ledger
    )

    # Ledger against buckets for a sample of lines.
    sample = random.Random(args.seed).sample(world.line_ids, min(REBUILD_SAMPLE, len(world.line_ids)))
    mismatches = []
    with runtime.unit_of_work() as uow:
        for line_id in sample:
            rebuilt, projected = balances.rebuild_remaining(uow, line_id), balances.projected_remaining(uow, line_id)
            if rebuilt != projected:
                mismatches.append((line_id, rebuilt, projected))
    timed_ok = tally.applied == tally.records and tally.records == sum(sizes[i] for i in run.done)
    # Charged usage is exactly what left the buckets (memory and profile batches included).
    drained = initial_remaining - after_remaining

    trend = max(1, min(10, len(latencies) // 2))
    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    rate = tally.records / timed if timed else 0.0
    out = [
        f"== {db}: {version}; load average {load_before:.2f} before, {load_after:.2f} after the timed run"
        " (other processes share these CPUs)",
        f"  command:             {reproduce_command(args, db)}",
        f"  set-up (not timed):  {len(world.line_ids):,} active lines, {3 * len(world.line_ids):,} buckets and grants,"
        f" {setup_seconds:.1f} s; allowances per line "
        + ", ".join(f"{k.unit.value} {v:,}" for k, v in world.allowance.items()),
        f"  records:             {tally.records:,} in {batches_done} batches of {args.batch:,} over"
        f" {len(world.line_ids):,} lines"
        + (
            f", by {args.streams} streams at once (each on its own 1/{args.streams} of the lines)"
            if args.streams > 1
            else ""
        )
        + (f"  (STOPPED by the {args.max_seconds:g} s cap; {args.records:,} asked)" if capped else ""),
        f"  outcomes:            applied {tally.applied:,}, duplicate {tally.duplicate:,}, conflict {tally.conflict:,},"
        f" rejected {tally.rejected:,}; {tally.with_overage:,} records ran into overage"
        f" ({100 * tally.with_overage / max(tally.records, 1):.1f}%)",
        f"  throughput:          {rate:,.0f} records/s  ({timed:.2f} s in ingest + commit"
        + (f", wall clock of all {args.streams} streams)" if args.streams > 1 else ")")
        + ("  [with --breakdown hooks]" if breakdown else ""),
        f"  batch latency:       p50 {1000 * percentile(latencies, 50):.1f} ms,"
        f" p95 {1000 * percentile(latencies, 95):.1f} ms, p99 {1000 * percentile(latencies, 99):.1f} ms,"
        f" max {1000 * max(latencies):.1f} ms"
        f" (first batch {1000 * latencies[0]:.1f} ms)",
        f"  latency trend:       median of the first {trend} batches {1000 * percentile(latencies[:trend], 50):.1f} ms,"
        f" of the last {trend} {1000 * percentile(latencies[-trend:], 50):.1f} ms",
        f"  memory:              tracemalloc peak {traced_peak / MB:.1f} MiB over {MEMORY_BATCHES} extra batches;"
        f" process maxrss {maxrss_kib / 1024:.1f} MiB",
        f"  replay:              first {replayed_batches} batches again ({replay.records:,} records):"
        f" {replay.records / replay_seconds:,.0f} records/s; applied {replay.applied}, duplicate {replay.duplicate:,};"
        f" bucket remaining total {before_remaining:,} -> {after_remaining:,}, ledger rows {before_ledger:,} ->"
        f" {after_ledger:,}",
        f"  {'PASS' if replay_ok else 'FAIL'}  replay applied 0 records and left balances and ledger unchanged",
        f"  {'PASS' if not mismatches else 'FAIL'}  rebuild_remaining == projected_remaining for {len(sample)} sampled"
        " lines" + (f"; mismatches: {mismatches[:3]}" if mismatches else ""),
        f"  {'PASS' if timed_ok else 'FAIL'}  every timed record applied exactly once"
        f" (buckets drained by {drained:,} units incl. the memory/profile batches)",
    ]
    if breakdown:
        out += breakdown.report()
    out += profile_lines
    print("\n".join(out), flush=True)
    return replay_ok and not mismatches and timed_ok


def profile_report(profiler: cProfile.Profile, batches: int) -> list[str]:
    import io

    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(25)
    buffer.write(f"\n(cumulative, {batches} batches)\n")
    stats.sort_stats("cumulative").print_stats(r"duckline|sqlalchemy/(engine|sql)/|psycopg", 30)
    return [f"  cProfile of {batches} extra batches:", *("    " + line for line in buffer.getvalue().splitlines())]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(
        f"duckline usage ingest benchmark: Python {platform.python_version()}, {platform.machine()},"
        f" {len(os.sched_getaffinity(0))} CPUs; started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        flush=True,
    )
    ok = True
    for db in databases:
        ok = run_database(db, args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
