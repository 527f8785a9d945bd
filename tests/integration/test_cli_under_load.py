"""Every read command against a live Vigil under load, as a user runs it in a pipe.

`vigil up` runs everything with the synthetic source offering 200 events/s, so
the EVENTS stream never runs dry while a command reads it. Each read command
must exit 0, print no traceback and no error on stderr, and return: the time
bound is a hang detector (a tail that waits for the stream to go quiet never
returns), far above what a command takes, not a speed assertion.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from services.registry import SERVICES
from tests.support import vigil_in, wait_until

pytestmark = pytest.mark.slow

HANG = 30.0  # s: a command still running after this is stuck, not slow
IMAGE = "synthetic/app-0"

READS = [
    ("status",),
    ("status", "-o", "json"),
    ("events", "tail", "-n", "3"),
    ("events", "tail", "-n", "3", "-o", "json"),
    ("events", "tail", "--kind", "exec", "-n", "2"),
    ("alerts", "list"),
    ("alerts", "list", "--raw", "-o", "json"),
    ("profiles", "list"),
    ("profiles", "list", "-o", "json"),
    ("profiles", "show", IMAGE),
    ("decisions", "sql", "SELECT action, count(*) FROM decisions GROUP BY ALL"),
    ("workloads", "list"),
    ("models", "list"),
    ("config", "show"),
]


def _vigil(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return vigil_in(env, *args, timeout=HANG)


def _loaded(env: dict[str, str]) -> bool:
    """Every service heartbeats, events flow and the synthetic image has a profile."""
    proc = _vigil(env, "status", "-o", "json")
    if proc.returncode != 0:
        return False
    report = json.loads(proc.stdout)
    events = next((s["messages"] for s in report["streams"] if s["stream"] == "EVENTS"), 0)
    live = {s["service"] for s in report["services"]} >= {*SERVICES, "collector"}
    profiles = _vigil(env, "profiles", "list", "-o", "json")
    return live and events > 0 and IMAGE in profiles.stdout


@pytest.fixture(scope="module")
def live_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("live")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {
        "VIGIL_DATA_DIR": str(tmp / "data"),
        "VIGIL_NATS_PORT": "-1",
        "VIGIL_COLLECTOR_SOURCE": "synthetic",
        "VIGIL_COLLECTOR_SYNTHETIC_RATE": "200",
        "VIGIL_TELEMETRY_HEARTBEAT_INTERVAL": "0.5",
        "VIGIL_SELF_TEST_ENABLED": "false",
    }
    log_path = tmp / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "up"], env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        wait_until(lambda: (tmp / "data" / "run" / "nats.url").exists())
        wait_until(lambda: _loaded(env), timeout=120)
        yield env
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(60)


@pytest.mark.parametrize("args", READS, ids=[" ".join(a) for a in READS])
def test_a_read_command_returns_cleanly_while_events_keep_arriving(
    live_env: dict[str, str], args: tuple[str, ...]
) -> None:
    proc = _vigil(live_env, *args)  # raises TimeoutExpired past HANG: a hang
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr.lower(), proc.stderr


def test_a_table_in_a_pipe_is_not_wrapped(live_env: dict[str, str]) -> None:
    out = _vigil(live_env, "status").stdout
    assert "│" not in out and "profile-learner-p0" in out  # plain columns; a consumer name on one line
    header = next(line for line in out.splitlines() if line.split()[:2] == ["stream", "consumer"])
    assert header.split() == ["stream", "consumer", "lag", "pending", "ack_pending", "redelivered", "ack_floor"]


@pytest.mark.parametrize("args", [("status",), ("events", "tail", "-n", "3"), ("alerts", "list")], ids=" ".join)
def test_a_read_command_with_no_server_answering_says_so_and_exits_1(tmp_path, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:  # a port nothing listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {"VIGIL_DATA_DIR": str(tmp_path), "VIGIL_NATS_URL": f"nats://127.0.0.1:{port}"}
    proc = _vigil(env, *args)  # nats-py alone would retry for ever: a hang
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"error: no NATS server answered at nats://127.0.0.1:{port} within 10 s"]
