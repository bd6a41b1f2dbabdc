"""The `duckline` command: serve, migrate, load demo data, import numbers and usage, inspect lines,
run the worker and the online charging (Diameter Gy) server."""

from __future__ import annotations

import csv
import faulthandler
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from duckline.accounts import service as accounts
from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.core import jobs
from duckline.core.config import Settings, base_url_mismatch
from duckline.core.errors import DomainError
from duckline.core.money import Money
from duckline.db.migrate import NotMigrated, upgrade
from duckline.lines import numbers
from duckline.lines import service as lines
from duckline.runtime import Runtime
from duckline.staff import demo
from duckline.usage import ingest as usage

app = typer.Typer(help="Duckline: run a virtual SIM service.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
numbers_app = typer.Typer(help="The number pool.", no_args_is_help=True)
plans_app = typer.Typer(help="The plan catalogue.", no_args_is_help=True)
line_app = typer.Typer(help="Lines.", no_args_is_help=True)
usage_app = typer.Typer(help="Usage records.", no_args_is_help=True)
staff_app = typer.Typer(help="Staff and machine accounts.", no_args_is_help=True)
jobs_app = typer.Typer(help="Scheduled jobs: reconcile, auto-renew, lifecycle.", no_args_is_help=True)
sip_app = typer.Typer(help="The SIP server (Kamailio).", no_args_is_help=True)
for sub, name in (
    (db_app, "db"),
    (numbers_app, "numbers"),
    (plans_app, "plans"),
    (line_app, "line"),
    (usage_app, "usage"),
    (staff_app, "staff"),
    (jobs_app, "jobs"),
    (sip_app, "sip"),
):
    app.add_typer(sub, name=name)

console = Console()
USAGE_BATCH = 1000

# How long `duckline ocs` may take to stop (DPR, waiting for peers, closing) before it gives up.
STOP_DEADLINE_SECONDS = 30


def _runtime(check: bool = True, settings: Settings | None = None) -> Runtime:
    runtime = Runtime(settings or Settings())
    if check:
        try:
            runtime.check_schema()
        except NotMigrated as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    return runtime


def _fail(error: DomainError) -> typer.Exit:
    console.print(f"[red]error[/red] {error.code}: {error}" + (f" (field: {error.field})" if error.field else ""))
    return typer.Exit(2)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    runtime = _runtime(check=False)
    upgrade(runtime.db.engine)
    console.print(f"database at {runtime.db.engine.url.render_as_string(hide_password=True)} is up to date")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="port to bind")] = None,
    workers: Annotated[int, typer.Option(help="server processes (each builds its own engine)")] = 1,
) -> None:
    """Serve the portal and the API on HOST:PORT. Refuses an unmigrated database.

    Payment pages, provider return URLs and webhooks use DUCKLINE_BASE_URL; unset, it follows the
    address actually listened on (`--port 0` picks a free port, and the links use it)."""
    import uvicorn

    from duckline.web.app import create_app

    chosen: dict[str, Any] = {name: value for name, value in (("host", host), ("port", port)) if value is not None}
    settings = Settings(**chosen)
    if workers > 1 and settings.port == 0:
        console.print("[red]--port 0 needs --workers 1: the worker processes must agree on one port[/red]")
        raise typer.Exit(2)
    listener = _listen(settings.host, settings.port) if workers == 1 else None
    if listener is not None and listener.getsockname()[1] != settings.port:
        settings = Settings(**{**chosen, "port": listener.getsockname()[1]})
    _refuse_a_base_url_elsewhere(settings, listener)
    runtime = _runtime(settings=settings)
    console.print(f"Duckline on {settings.base_url}  (portal: /, staff console: /console, API docs: /api/v1/docs)")
    if workers > 1:  # each process builds its app from the same DUCKLINE_* settings
        if settings.rate_limit_storage.startswith("memory"):
            console.print(
                f"note: login and OTP limits are counted in each of the {workers} processes on its own;"
                " set DUCKLINE_RATE_LIMIT_STORAGE=redis://… to share them"
            )
        runtime.close()
        os.environ["DUCKLINE_BASE_URL"] = settings.base_url  # the processes read their settings afresh
        uvicorn.run(
            "duckline.web.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level="info",
            access_log=False,
        )
        return
    assert listener is not None
    config = uvicorn.Config(
        create_app(runtime=runtime), host=settings.host, port=settings.port, log_level="info", access_log=False
    )
    uvicorn.Server(config).run(sockets=[listener])


def _listen(host: str, port: int) -> socket.socket:
    """Bind before anything else, so that the port is known (and free) before links are made with it."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        console.print(f"[red]cannot listen on {host}:{port}: {exc.strerror or exc}[/red]")
        raise typer.Exit(1) from exc
    return listener


def _refuse_a_base_url_elsewhere(settings: Settings, listener: socket.socket | None) -> None:
    problem = base_url_mismatch(settings)
    if problem:
        if listener is not None:
            listener.close()
        console.print(f"[red]{problem}[/red]")
        raise typer.Exit(2)
    if settings.base_url_is_explicit:
        console.print(f"payment pages and webhooks use DUCKLINE_BASE_URL={settings.base_url}")


@app.command("demo")
def load_demo() -> None:
    """Load the demo catalogue, number pool, staff and subscribers (safe to run again)."""
    runtime = _runtime()
    with runtime.unit_of_work() as uow:
        report = demo.load(uow)
    table = Table(title="Demo logins (phone / password)")
    for column in ("phone", "password", "role"):
        table.add_column(column)
    table.add_column("line")
    for row in report.logins:
        table.add_row(*row, ", ".join(report.lines.get(row[0], [])))
    console.print(table)
    console.print(f"Network API key (role network, for POST /api/v1/usage/batches): {report.network_token}")
    console.print(f"Demo SMS (verification codes) are written to {runtime.settings.log_dir / 'sms-outbox.log'}")


@numbers_app.command("import")
def numbers_import(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Load numbers into the pool from a file: one number per line (or first CSV column)."""
    raw = [row[0] for row in csv.reader(path.read_text().splitlines()) if row and not row[0].startswith("#")]
    runtime = _runtime()
    try:
        with runtime.unit_of_work() as uow:
            result = numbers.import_numbers(uow, raw)
    except DomainError as exc:
        raise _fail(exc) from exc
    console.print(f"added {result.added}, already in the pool {result.already_present}")


@plans_app.command("list")
def plans_list(include_retired: bool = False) -> None:
    """The catalogue with prices and allowances."""
    runtime = _runtime()
    table = Table()
    for column in ("code", "kind", "status", "name", "price", "validity", "allowances"):
        table.add_column(column)
    with runtime.unit_of_work() as uow:
        plans = catalog.list_plans(uow, include_retired)
        allowances = catalog.allowances_of(uow, [p.id for p in plans])
        for p in plans:
            validity = f"{p.validity_months} month(s)" if p.validity_months else f"{p.validity_days} days"
            table.add_row(
                p.code,
                p.kind.value,
                p.status.value,
                p.names["en"],
                Money(p.price_amount, p.currency).format(),
                validity,
                ", ".join(f"{a.unit.value}/{a.zone.value}={a.amount}" for a in allowances[p.id]),
            )
    console.print(table)


@line_app.command("status")
def line_status(msisdn: str) -> None:
    """A line's status, allowances, expiry and warnings."""
    runtime = _runtime()
    try:
        with runtime.unit_of_work() as uow:
            view = lines.status(uow, lines.line_by_msisdn(uow, msisdn))
    except DomainError as exc:
        raise _fail(exc) from exc
    line = view.line
    console.print(
        f"{line.msisdn}  status={line.status.value}  plan={view.plan.code if view.plan else '-'}  "
        f"expires={line.expires_at.isoformat() if line.expires_at else '-'}"
    )
    table = Table()
    for column in ("unit", "zone", "initial", "used", "remaining", "used %"):
        table.add_column(column)
    for a in view.allowances:
        table.add_row(a.unit, a.zone, str(a.initial), str(a.used), str(a.remaining), str(a.used_percent))
    console.print(table)
    for w in view.usage_warnings:
        console.print(f"[yellow]warning[/yellow] {w.unit}/{w.zone} {w.used_percent}% used (≥ {w.threshold}%)")
    if view.expiry_warning:
        console.print(f"[yellow]warning[/yellow] expires within {view.expiry_warning.days} day(s)")


def _read_usage(path: Path) -> list[usage.UsageInput]:
    """CSV with a header (record_id,msisdn,kind,zone,quantity,started_at) or JSON lines, each record
    held to the API's rules (UsageRecordIn): a quantity is an integer (in JSON a number, never
    `true` or `1.5`), a start has a time zone. A file with any unreadable record is refused whole,
    each problem named by line and field, and nothing is applied."""
    from pydantic import ValidationError

    from duckline.usage.schemas import UsageRecordIn

    records: list[usage.UsageInput] = []
    problems: list[str] = []
    for number, row in _usage_rows(path):
        try:
            if not isinstance(row, dict):
                raise ValueError("a record is a JSON object")
            r = UsageRecordIn.model_validate({k: v for k, v in row.items() if k != "zone" or v})
        except ValidationError as exc:
            problems += [f"line {number}, {'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors()]
            continue
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        records.append(usage.UsageInput(r.record_id, r.msisdn, r.kind, r.zone, r.quantity, r.started_at))
    if problems:
        console.print(f"[red]error[/red] validation_failed: {len(problems)} problem(s) in {path}, nothing applied")
        for problem in problems[:20]:
            console.print(f"  {problem}")
        raise typer.Exit(2)
    return records


def _usage_rows(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, record) for each record; CSV quantities that are plain digits become numbers."""
    with path.open(encoding="utf-8") as source:
        if path.suffix in (".jsonl", ".json"):
            for number, line in enumerate(source, start=1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except ValueError:
                        yield number, "not JSON"
            return
        reader = csv.DictReader(source)
        for row in reader:
            record: dict[str, object] = dict(row)
            if re.fullmatch(r"[0-9]+", row.get("quantity") or ""):
                record["quantity"] = int(row["quantity"])
            yield reader.line_num, record


@usage_app.command("import")
def usage_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    source: Annotated[str, typer.Option(help="the reporting system; record ids are unique per source")] = "file",
) -> None:
    """Apply usage records from a file in batches of 1,000; running it again charges nothing twice.
    Records that started outside the accepted window (DUCKLINE_USAGE_MAX_AGE_DAYS back,
    DUCKLINE_USAGE_MAX_FUTURE_MINUTES ahead) are rejected and listed; the others are applied."""
    runtime = _runtime()
    records = _read_usage(path)
    totals = {"applied": 0, "duplicate": 0, "conflict": 0, "rejected": 0}
    refused: list[usage.RecordOutcome] = []
    with Progress(console=console) as progress:
        task = progress.add_task("applying usage", total=len(records))
        for start in range(0, len(records), USAGE_BATCH):
            chunk = records[start : start + USAGE_BATCH]
            with runtime.unit_of_work() as uow:
                outcome = usage.ingest(uow, source, chunk)
            for status in totals:
                totals[status] += outcome.count(status)
            refused += [r for r in outcome.records if r.status in ("rejected", "conflict")]
            progress.advance(task, len(chunk))
    console.print(", ".join(f"{k} {v}" for k, v in totals.items()))
    for record in refused[:20]:
        console.print(f"  {record.status} {record.record_id}: {record.error}")


@jobs_app.command("run")
def jobs_run(name: Annotated[str, typer.Argument(help="reconcile, auto-renew, lifecycle or all")] = "all") -> None:
    """Run scheduled jobs once (they are idempotent: running them again is harmless)."""
    runtime = _runtime()
    try:
        results = jobs.run_all(runtime) if name == "all" else {name: jobs.run(runtime, name)}
    except DomainError as exc:
        raise _fail(exc) from exc
    for job, result in results.items():
        console.print(f"{job}: {result}")


@app.command()
def worker() -> None:
    """Run the background worker (jobs, webhook sender, messages) until interrupted."""
    from duckline.worker import Worker

    runtime = _runtime()
    console.print("worker running; Ctrl-C to stop")
    _stop_on_signals()
    with suppress(KeyboardInterrupt):
        Worker(runtime, runtime.settings.worker_interval_seconds).run_forever()


@app.command()
def ocs(
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="port to bind")] = None,
    processes: Annotated[int, typer.Option(min=1, help="server processes sharing the port (one per core)")] = 1,
    listen_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
    origin_state_id: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the online charging server (Diameter Gy/Ro, credit control) until interrupted."""
    from duckline.diameter.server import GyServer

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("duckline").setLevel(logging.INFO)
    if processes > 1:
        _ocs_processes(host, port, processes)
        return
    # The charging threads wait on the database a dozen times per batch, and after each wait on
    # the event loop's thread for the GIL: at Python's default 5 ms switch interval that alone
    # costs a batch tens of milliseconds. 0.5 ms keeps the hand-over short.
    sys.setswitchinterval(0.0005)
    runtime = _runtime()
    listening = socket.socket(fileno=listen_fd) if listen_fd is not None else None
    server = GyServer(runtime, host, port, listening=listening, origin_state_id=origin_state_id)
    try:
        server.start()
    except OSError as exc:  # the port is taken (another `duckline ocs`?), or the address is not ours
        runtime.close()
        console.print(f"[red]cannot listen on {server.host}:{server.port}: {exc.strerror or exc}[/red]")
        raise typer.Exit(1) from exc
    settings = runtime.settings
    console.print(
        f"Gy server {settings.diameter_origin_host} (realm {settings.diameter_realm}) on {server.host}:{server.port};"
        f" peers: {', '.join(settings.diameter_peers) or 'none (set DUCKLINE_DIAMETER_PEERS)'}; Ctrl-C to stop"
    )
    _stop_on_signals()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping: disconnecting peers")
    finally:
        # A stop that hangs (a peer that never leaves, a stuck library thread) ends the process
        # with every thread's stack printed, rather than leaving it for the service manager to kill.
        faulthandler.dump_traceback_later(STOP_DEADLINE_SECONDS, exit=True)
        server.stop()
        runtime.close()
        faulthandler.cancel_dump_traceback_later()


def _ocs_processes(host: str | None, port: int | None, processes: int) -> None:
    """`processes` OCS processes accepting on one socket bound here (so a port in use is an error
    here, at once, as with one process; the kernel spreads the peers' connections over them). The
    processes are one Diameter node: one Origin-State-Id. One that dies is started again."""
    import subprocess

    settings = Settings()
    address = (host or settings.diameter_host, settings.diameter_port if port is None else port)
    try:
        listening = socket.create_server(address)
    except OSError as exc:
        console.print(f"[red]cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}[/red]")
        raise typer.Exit(1) from exc
    address = listening.getsockname()[:2]
    command = [sys.executable, "-m", "duckline.cli", "ocs", "--listen-fd", str(listening.fileno())]
    command += ["--origin-state-id", str(int(time.time()) & 0xFFFFFFFF)]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, pass_fds=(listening.fileno(),))  # noqa: S603 (our own command)

    console.print(f"Gy server on {address[0]}:{address[1]} in {processes} processes; Ctrl-C to stop")
    children = [start() for _ in range(processes)]
    _stop_on_signals()
    try:
        while True:
            time.sleep(0.5)
            for at, child in enumerate(children):
                if child.poll() is not None:
                    console.print(
                        f"[red]OCS process {child.pid} exited with {child.returncode}: starting another[/red]"
                    )
                    children[at] = start()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            with suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
        listening.close()


def _stop_on_signals() -> None:
    """Stop on SIGINT (Ctrl-C) and SIGTERM (a service manager's stop) alike. SIGINT is set here too:
    a process started in the background of a script (`duckline ocs &`) inherits it ignored, and
    Python then leaves it ignored, so the process would never stop on it."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@staff_app.command("create")
def staff_create(
    phone: str,
    role: Annotated[Role, typer.Option(help="support, finance, admin or network")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Create a staff account (or a machine account with the network role)."""
    runtime = _runtime()
    try:
        with runtime.unit_of_work() as uow:
            account = accounts.create_staff(uow, phone, password, role)
    except DomainError as exc:
        raise _fail(exc) from exc
    console.print(f"created {role.value} account {account.id} ({account.phone})")


@staff_app.command("token")
def staff_token(phone: str, name: Annotated[str, typer.Option()] = "cli") -> None:
    """Issue a bearer token (API key) for an existing staff or network account."""
    runtime = _runtime()
    try:
        with runtime.unit_of_work() as uow:
            token = accounts.issue_staff_token(uow, phone, name)
    except DomainError as exc:
        raise _fail(exc) from exc
    console.print(token)


@sip_app.command("config")
def sip_config(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of printing")] = None,
) -> None:
    """Render Kamailio's configuration (kamailio.cfg) from the DUCKLINE_SIP_* and database settings."""
    from duckline.sipserver.config import SipConfigError, render

    try:
        text = render(Settings())
    except SipConfigError as exc:
        console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from exc
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output}; check it with: kamailio -c -f {output}")


if __name__ == "__main__":
    app()
