"""`duckline serve --port N` (what `./scripts/up --port N` runs): payment pages, return URLs and
the sandbox's webhooks use the port the server really listens on, unless DUCKLINE_BASE_URL says
otherwise; and a development base URL on this machine at another port is refused at start."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from duckline.staff.demo import DEMO_PASSWORD, SUBSCRIBERS

PHONE = SUBSCRIBERS[0].phone


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment(directory: Path) -> dict[str, str]:
    """A development environment of its own: a SQLite file and log directory in `directory`."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("DUCKLINE_")}
    values |= {
        "DUCKLINE_DATABASE_URL": f"sqlite:///{directory / 'serve.db'}",
        "DUCKLINE_LOG_DIR": str(directory / "var"),
        "DUCKLINE_PASSWORD_TIME_COST": "1",
        "DUCKLINE_PASSWORD_MEMORY_KIB": "1024",
        "DUCKLINE_WORKER_INTERVAL_SECONDS": "0.5",
        "COLUMNS": "200",
        # This checkout's duckline, whatever the environment has installed.
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    return values


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database migrated and the demo loaded by the CLI, once for the module: two interpreters
    starting up and migrating cost more than each test (a few seconds on a busy machine)."""
    directory = tmp_path_factory.mktemp("serve")
    for command in (["db", "upgrade"], ["demo"]):
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "duckline.cli", *command], env=environment(directory), cwd=directory, check=True
        )
    return directory


@pytest.fixture
def env(prepared: Path, tmp_path: Path) -> dict[str, str]:
    """A copy of the prepared database (and log directory) for each test: what one test's server
    writes (orders, payments) is not seen by the next."""
    shutil.copytree(prepared, tmp_path, dirs_exist_ok=True)
    return environment(tmp_path)


def serve(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 (our own command line)
        [sys.executable, "-m", "duckline.cli", "serve", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_up(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"no server at {base}")


def test_payment_links_and_webhooks_follow_the_port_served(
    env: dict[str, str], tmp_path: Path, stop: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    server = serve(env, tmp_path, "--port", str(port))
    stop.append(server)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base, server)

    with httpx.Client(base_url=base, timeout=10) as http:
        token = http.post("/api/v1/auth/tokens", json={"phone": PHONE, "password": DEMO_PASSWORD}).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        line = http.get("/api/v1/lines", headers=auth).json()["items"][0]
        order = http.post(
            "/api/v1/orders",
            json={"line_id": line["id"], "plan_code": "hk-voice-30", "payment_method": "card"},
            headers=auth | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert order.status_code == 201, order.text
        checkout = order.json()["payments"][0]["next_action"]["url"]
        assert checkout.startswith(f"{base}/sandbox/checkout/"), checkout  # the hosted payment page

        paid = http.post(checkout.removeprefix(base), data={"card_number": "4242424242424242"})
        assert paid.status_code == 303
        assert paid.headers["location"].startswith(f"{base}/api/v1/payments/"), paid.headers["location"]

        # The sandbox's webhook is posted to the base URL by the worker in `serve`: it arrives.
        deadline = time.monotonic() + 30
        while (
            status := http.get(f"/api/v1/orders/{order.json()['id']}", headers=auth).json()["status"]
        ) != "fulfilled":
            assert time.monotonic() < deadline, f"the webhook never arrived: order {status}"
            time.sleep(0.2)


def test_port_zero_serves_on_a_free_port_and_links_to_it(
    env: dict[str, str], tmp_path: Path, stop: list[subprocess.Popen[str]]
) -> None:
    server = serve(env, tmp_path, "--port", "0")
    stop.append(server)
    assert server.stdout is not None
    banner = server.stdout.readline()
    found = re.search(r"Duckline on (http://127\.0\.0\.1:(\d+))", banner)
    assert found and found.group(2) != "0", banner
    wait_until_up(found.group(1), server)


def test_a_development_base_url_at_another_local_port_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    wrong = env | {"DUCKLINE_BASE_URL": "http://127.0.0.1:8000"}
    server = serve(wrong, tmp_path, "--port", str(port))
    output, _ = server.communicate(timeout=30)
    assert server.returncode == 2, output
    assert "DUCKLINE_BASE_URL is http://127.0.0.1:8000" in output and f"port {port}" in output
    assert f"http://127.0.0.1:{port}" in output  # what to set it to instead
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # and the port was let go


def test_an_explicit_base_url_elsewhere_is_kept(
    env: dict[str, str], tmp_path: Path, stop: list[subprocess.Popen[str]]
) -> None:
    """A tunnel or proxy in front of us: the payment pages must name it, not us."""
    port = free_port()
    server = serve(env | {"DUCKLINE_BASE_URL": "https://pay.tunnel.example"}, tmp_path, "--port", str(port))
    stop.append(server)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base, server)
    with httpx.Client(base_url=base, timeout=10) as http:
        token = http.post("/api/v1/auth/tokens", json={"phone": PHONE, "password": DEMO_PASSWORD}).json()["token"]
        auth = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        line = http.get("/api/v1/lines", headers=auth).json()["items"][0]
        body = {"line_id": line["id"], "plan_code": "hk-voice-30", "payment_method": "card"}
        order = http.post("/api/v1/orders", json=body, headers=auth)
    assert order.json()["payments"][0]["next_action"]["url"].startswith("https://pay.tunnel.example/sandbox/checkout/")
