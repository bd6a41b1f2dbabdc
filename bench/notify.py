"""Notifications delivered per second to a real SMTP server and a real SMPP peer on loopback.

    .venv/bin/python bench/notify.py --messages 2000 --workers 2 --db sqlite
    .venv/bin/python bench/notify.py --messages 2000 --workers 2 --db postgresql

Queues N messages (half SMS in 繁體中文, long enough to need two UCS-2 parts, half email with an
HTML part) through the real outbox service, then lets W worker threads deliver them with the real
SMTP and SMPP channels: aiosmtpd and the test SMSC (tests/smsc.py) on 127.0.0.1. Bounded: stops
when everything is sent or after --seconds.
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiosmtpd.controller import Controller
from sqlalchemy import func, select, text

from duckline.core.config import Settings
from duckline.core.money import Money
from duckline.db.engine import make_engine
from duckline.db.migrate import upgrade
from duckline.messaging import notifications
from duckline.messaging.email.smtp import SmtpEmailChannel
from duckline.messaging.models import Notification
from duckline.messaging.sms.smpp import SmppSmsChannel
from duckline.runtime import Runtime
from tests.smsc import Smsc


class Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        return "250 OK"


def database(kind: str, pg_server: str) -> tuple[str, object]:
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp()) / "notify.db"
        return f"sqlite:///{path}", None
    name = f"duckline_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return pg_server.rsplit("/", 1)[0] + f"/{name}", (admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()

    url, cleanup = database(args.db, args.postgres_url)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    sink = Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    smsc = Smsc("bench", "bench123").start()
    runtime = Runtime(
        Settings(environment="test", database_url=url, log_dir=Path(tempfile.mkdtemp()), deliver_after_commit=False)
    )
    sms = SmppSmsChannel("127.0.0.1", smsc.port, "bench", "bench123", "Duckline")
    mail = SmtpEmailChannel("127.0.0.1", smtp_port, "none", None, None, "Duckline <no-reply@duckline.example>")

    with runtime.unit_of_work() as uow:  # set-up, not timed
        for i in range(args.messages):
            channel, to = ("sms", f"+8526{1000000 + i:07d}") if i % 2 == 0 else ("email", f"user{i}@example.com")
            notifications.send_to(
                uow,
                channel,
                to,
                "renewal_succeeded",
                "zh_Hant",
                msisdn="+852 5170 0000",
                plan="數據王 30日",
                amount=Money(12800, "HKD"),
                expires=uow.now(),
                receipt=f"R2026-{i:06d}",
            )

    tracemalloc.start()
    deadline = time.monotonic() + args.seconds
    started = time.perf_counter()

    def work() -> None:
        while time.monotonic() < deadline and notifications.deliver_due(runtime.db, sms, mail, runtime.clock, 20):
            pass

    threads = [threading.Thread(target=work) for _ in range(args.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    with runtime.unit_of_work() as uow:
        sent = uow.session.scalar(select(func.count()).where(Notification.status == "sent")) or 0
    sms_parts, emails = len(smsc.accepted()), sink.count
    controller.stop()
    smsc.stop()
    runtime.close()
    if cleanup:
        admin, name = cleanup  # type: ignore[misc]
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    print(f"database:        {args.db}")
    print(f"messages:        {sent} of {args.messages} sent ({args.messages // 2} SMS, {args.messages // 2} email)")
    print(f"arrived:         {emails} emails at the SMTP server, {sms_parts} SMS parts at the SMSC")
    print(f"workers:         {args.workers}")
    print(f"throughput:      {sent / elapsed:,.0f} messages/s ({elapsed:.2f} s)")
    print(
        f"memory:          tracemalloc peak {peak / 2**20:.1f} MiB; "
        f"maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    print(
        f"reproduce:       .venv/bin/python bench/notify.py --messages {args.messages} --workers {args.workers} "
        f"--db {args.db}"
    )
    if sent != args.messages or emails != args.messages // 2:
        print("FAIL: not every message arrived exactly once")
        sys.exit(1)


if __name__ == "__main__":
    main()
