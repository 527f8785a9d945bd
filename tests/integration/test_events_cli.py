"""`vigil events tail` against a real nats-server: the last N matching events, in
order, then exit 0 with nothing on stderr (no drain-timeout traceback)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from contracts import trace
from contracts.events import ClockTicked, Container, ExecObserved, Process
from services.runtime.settings import Settings
from tests.support import run_vigil, service_env

T0 = 1_767_225_600_000_000_000


def test_tail_prints_the_last_matching_events_and_exits_cleanly(settings: Settings, tmp_path: Path) -> None:
    events = [
        ExecObserved(
            time=T0 + i,
            node="n1",
            container=Container(id=f"c{i % 2}", image_name="nginx" if i % 2 else "redis", image_tag="1"),
            process=Process(pid=100 + i, path=f"/bin/t{i}"),
        )
        for i in range(20)
    ] + [ClockTicked(time=T0 + 10**9, node="n1")]
    path = tmp_path / "trace.jsonl"
    path.write_bytes(b"".join(trace.write(events)))
    assert run_vigil(settings, "collect", "--from", str(path)).returncode == 0

    tail = run_vigil(settings, "events", "tail", "-n", "3", "--image", "nginx", "-o", "json")
    assert tail.returncode == 0 and tail.stderr == "", tail.stderr
    assert [json.loads(line)["process"]["pid"] for line in tail.stdout.splitlines()] == [115, 117, 119]

    ticks = run_vigil(settings, "events", "tail", "--kind", "tick", "-o", "json")
    assert len(ticks.stdout.splitlines()) == 1  # published to every partition, printed once

    table = run_vigil(settings, "events", "tail", "-n", "2")
    assert table.returncode == 0 and table.stderr == "", table.stderr
    assert [line.split()[1] for line in table.stdout.splitlines()] == ["kind", "exec", "exec"]


def test_follow_prints_new_events_and_ctrl_c_ends_it_cleanly(settings: Settings, tmp_path: Path) -> None:
    def trace_of(first: int) -> Path:
        path = tmp_path / f"trace-{first}.jsonl"
        events = [
            ExecObserved(
                time=T0 + i,
                node="n1",
                container=Container(id="c1", image_name="nginx", image_tag="1"),
                process=Process(pid=i, path="/bin/sh"),
            )
            for i in range(first, first + 3)
        ]
        path.write_bytes(b"".join(trace.write(events)))
        return path

    assert run_vigil(settings, "collect", "--from", str(trace_of(100))).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "events", "tail", "-f", "-n", "1", "-o", "json"],
        env=service_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["process"]["pid"] == 102  # the last stored one
        assert run_vigil(settings, "collect", "--from", str(trace_of(200))).returncode == 0
        assert [json.loads(proc.stdout.readline())["process"]["pid"] for _ in range(3)] == [200, 201, 202]
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_tail_reads_back_only_as_far_as_the_matching_events_are(settings: Settings, tmp_path: Path) -> None:
    """One event per message: a tail reads the stream backwards in growing windows, so
    the last events come from the end and a rare match from as far back as it is."""
    events = [
        ExecObserved(
            time=T0 + i,
            node="n1",
            container=Container(id="early" if i < 2 else "late", image_name="nginx", image_tag="1"),
            process=Process(pid=100 + i, path="/bin/sh"),
        )
        for i in range(300)
    ]
    path = tmp_path / "trace.jsonl"
    path.write_bytes(b"".join(trace.write(events)))
    assert run_vigil(settings, "collect", "--from", str(path), VIGIL_COLLECTOR_BATCH_SIZE="1").returncode == 0

    def pids(*args: str) -> list[int]:
        tail = run_vigil(settings, "events", "tail", "-o", "json", *args)
        assert tail.returncode == 0 and tail.stderr == "", tail.stderr
        return [json.loads(line)["process"]["pid"] for line in tail.stdout.splitlines()]

    assert pids("-n", "3") == [397, 398, 399]
    assert pids("-n", "3", "--container", "early") == [100, 101]  # all there are, from the stream's start
    assert pids("-n", "299", "--container", "late") == list(range(102, 400))  # two windows, in order
