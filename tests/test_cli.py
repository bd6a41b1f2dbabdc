"""The `duckline` command, run against a real SQLite file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from duckline.cli import app
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.diameter.models import DiameterPeerState
from duckline.runtime import Runtime

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DUCKLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("DUCKLINE_LOG_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DUCKLINE_PASSWORD_TIME_COST", "1")
    monkeypatch.setenv("DUCKLINE_PASSWORD_MEMORY_KIB", "1024")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_commands_refuse_an_unmigrated_database(env: Path) -> None:
    result = runner.invoke(app, ["plans", "list"])
    assert result.exit_code == 1
    assert "duckline db upgrade" in result.output


def test_demo_then_inspect_and_import(env: Path) -> None:
    run("db", "upgrade")
    demo = run("demo")
    assert "+85291234567" in demo and "duckline-demo" in demo
    assert run("demo").count("+85291234567") == demo.count("+85291234567")  # safe to run again

    plans = run("plans", "list")
    for code in ("hk-voice-30", "hk-data-30", "cross-border-month", "addon-data-5gb", "addon-cn-voice-300"):
        assert code in plans
    assert "HK$88.00" in plans

    status = run("line", "status", "+85251700000")
    assert "status=active" in status and "plan=hk-voice-30" in status
    assert "80" in status and "warning" in status

    numbers_file = env / "numbers.txt"
    numbers_file.write_text("+852 5171 0000\n51710001\n# comment\n+85251710000\n")
    assert "added 2, already in the pool 0" in run("numbers", "import", str(numbers_file))
    assert "added 0, already in the pool 2" in run("numbers", "import", str(numbers_file))
    bad = env / "bad.txt"
    bad.write_text("+85251710002\nnot-a-number\n")
    result = runner.invoke(app, ["numbers", "import", str(bad)])
    assert result.exit_code == 2 and "number_invalid" in result.output

    usage_file = env / "usage.jsonl"
    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    usage_file.write_text(
        "\n".join(
            json.dumps(
                {
                    "record_id": f"cli-{i}",
                    "msisdn": "+85251700000",
                    "kind": "sms",
                    "zone": "HK",
                    "quantity": 1,
                    # One record from a clock gone wrong, decades ahead: rejected, never charged.
                    "started_at": "2099-01-01T00:00:00+08:00" if i == 0 else soon,
                }
            )
            for i in range(5)
        )
    )
    first = run("usage", "import", str(usage_file), "--source", "cli-test")
    assert "applied 4" in first and "rejected 1" in first
    assert "rejected cli-0: usage_record_out_of_window" in first
    again = run("usage", "import", str(usage_file), "--source", "cli-test")
    assert "applied 0" in again and "duplicate 4" in again
    sms_line = next(line for line in run("line", "status", "+85251700000").splitlines() if "sms" in line)
    remaining = int(re.split(r"[│|]", sms_line)[5].strip())
    assert remaining == 300 - 240 - 4  # plan SMS - demo usage - the four records inside the period


def test_ocs_serves_credit_control_until_interrupted(env: Path) -> None:
    from tests.diameter.test_gy import VOICE, NetworkElement, connect, free_port

    run("db", "upgrade")
    run("demo")
    port = free_port()
    server_env = {**os.environ, "DUCKLINE_DIAMETER_PEERS": '["aaa://pgw.cli.test"]'}
    command = [sys.executable, "-m", "duckline.cli", "ocs", "--port", str(port)]
    # Started as a script's background job is (`duckline ocs &`): with SIGINT ignored, which the
    # child inherits. It must still stop on SIGINT.
    server = subprocess.Popen(  # noqa: S603 (our own command line)
        command,
        env=server_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert server.stdout is not None
    output: list[str] = []
    try:
        banner = server.stdout.readline()  # printed once the port is bound
        assert f"127.0.0.1:{port}" in banner, banner + server.stdout.read()
        # Keep reading what it prints: a child writing into a full pipe nobody reads would block.
        reader = threading.Thread(target=lambda: output.extend(server.stdout or ()), daemon=True)
        reader.start()
        node, app, _ = connect(Settings(diameter_port=port), "pgw.cli.test")
        try:
            app.wait_for_ready(timeout=10)
            element = NetworkElement(node, app, FrozenClock(datetime.now(UTC)))
            answer = element.ask("cli;1", 0, 1, "+85251700000", asked={"cc_time": 60}, context=VOICE, mscc=False)
            assert answer.result_code == 2001 and answer.granted_service_unit.cc_time == 60
            server.send_signal(signal.SIGINT)  # it sends DPR, waits for the peer to leave, exits
        finally:
            # Each node's stop waits on the library's polling threads (a few seconds): at once.
            stopping = threading.Thread(target=node.stop, kwargs={"force": True})
            stopping.start()
        # A guard against a hang, not a measure: the peer's leaving takes seconds, more on a busy machine.
        try:
            code = server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, "".join(output)
        stopping.join(timeout=30)
    finally:
        server.kill()
        server.wait()
    # Each peer event is a line of its log, and the console's table has the peer, stopped.
    logged = "".join(output)
    assert "peer pgw.cli.test connected: CER from 127.0.0.1:" in logged, logged
    assert "peer pgw.cli.test down: " in logged, logged
    with Runtime(Settings()).unit_of_work() as uow:
        rows = uow.session.execute(select(DiameterPeerState.peer_host, DiameterPeerState.running)).all()
    assert sorted(tuple(r) for r in rows) == [("", False), ("pgw.cli.test", False)], logged  # "": the server's own


@pytest.mark.parametrize(
    ("suffix", "content"),
    [
        (
            ".jsonl",
            '{"record_id": "a", "msisdn": "+85251700000", "kind": "sms", "quantity": 1, "started_at": "%s"}\n'
            '{"record_id": "b", "msisdn": "+85251700000", "kind": "sms", "quantity": true, "started_at": "%s"}\n',
        ),
        (
            ".jsonl",
            '{"record_id": "a", "msisdn": "+85251700000", "kind": "sms", "quantity": 1, "started_at": "%s"}\n'
            '{"record_id": "b", "msisdn": "+85251700000", "kind": "sms", "quantity": 2.5, "started_at": "%s"}\n',
        ),
        (
            ".csv",
            "record_id,msisdn,kind,zone,quantity,started_at\na,+85251700000,sms,HK,1,%s\nb,+85251700000,sms,HK,1.0,%s\n",
        ),
    ],
    ids=["json-true", "json-fraction", "csv-fraction"],
)
def test_usage_import_refuses_a_file_with_a_quantity_that_is_not_an_integer(
    env: Path, suffix: str, content: str
) -> None:
    run("db", "upgrade")
    run("demo")
    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    usage_file = env / f"usage{suffix}"
    usage_file.write_text(content % (soon, soon))
    result = runner.invoke(app, ["usage", "import", str(usage_file), "--source", "strict"])
    assert result.exit_code == 2, result.output
    assert "validation_failed" in result.output and "nothing applied" in result.output
    bad_line = 3 if suffix == ".csv" else 2  # a CSV file's first line is its header
    assert f"line {bad_line}, quantity" in result.output
    # Without the bad record, the good one is applied now: it was not before.
    good = content.splitlines(keepends=True)[: bad_line - 1]
    usage_file.write_text("".join(good) % ((soon,) * "".join(good).count("%s")))
    assert "applied 1, duplicate 0" in run("usage", "import", str(usage_file), "--source", "strict")
