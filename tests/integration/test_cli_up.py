"""The walking skeleton as a user runs it: `vigil up`, `vigil collect --from`,
`vigil status`, a decision landing in the DuckDB archive, Ctrl-C stopping all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from contracts import trace
from contracts.codec import encode_json
from contracts.decisions import Decision
from contracts.events import ClockTicked, Container, ExecObserved, Process
from contracts.subjects import decisions_subject
from services.registry import SERVICES
from services.runtime.bus import connect, publish_one
from services.runtime.settings import load_settings
from tests.support import vigil_in, wait_until

T0 = 1_767_225_600_000_000_000


vigil = vigil_in
wait = wait_until


def status(env: dict[str, str]) -> dict:
    proc = vigil(env, "status", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_up_collect_status_archive_and_clean_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {"VIGIL_DATA_DIR": str(data), "VIGIL_NATS_PORT": "-1", "VIGIL_TELEMETRY_HEARTBEAT_INTERVAL": "0.5"}
    up_log = tmp_path / "up.log"
    with open(up_log, "wb") as log:
        # a session of its own, as a terminal gives it: Ctrl-C below goes to the whole group
        up = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "up"], env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        wait(lambda: (data / "run" / "nats.url").exists())
        live = wait(lambda: {s["service"] for s in status(env)["services"]} >= set(SERVICES) and status(env))
        assert {s["service"] for s in live["services"]} >= set(SERVICES)
        output = up_log.read_text()
        assert str(data) in output and "profile-learner" in output

        events = [
            ExecObserved(
                time=T0 + i,
                node="n1",
                container=Container(id="c1", image_name="nginx", image_tag="1.25"),
                process=Process(pid=i, path=f"/bin/t{i % 3}"),
            )
            for i in range(1000)
        ] + [ClockTicked(time=T0 + 10**9, node="n1")]
        trace_file = tmp_path / "trace.jsonl"
        trace_file.write_bytes(b"".join(trace.write(events)))
        collected = vigil(env, "collect", "--from", str(trace_file))
        assert collected.returncode == 0, collected.stderr
        assert "published 1004 events" in collected.stdout.replace("\n", " ")  # the tick goes to all 4 partitions

        def learner_caught_up() -> bool:
            st = status(env)
            learner = [
                c for c in st["consumers"] if c["stream"] == "EVENTS" and c["consumer"].startswith("profile-learner-p")
            ]
            # (as root the eBPF collector publishes too: wait for an idle moment, not a fixed sequence)
            idle = all(c["pending"] == 0 and c["ack_pending"] == 0 for c in learner)
            return len(learner) == 4 and max(c["ack_floor"] for c in learner) >= 5 and idle

        wait(learner_caught_up)
        owners = {row["owner"] for row in status(env)["partitions"]}
        assert len(owners) == 1 and "(nobody)" not in owners  # `vigil up` runs one learner: it owns all 4

        url = (data / "run" / "nats.url").read_text().split()[0]
        decision = Decision(
            id="walking-skeleton-1",
            time=T0,
            source="self_test",
            event_type="test",
            action="allow",
            message="hello archive",
        )

        async def publish() -> None:
            bus = await connect(
                load_settings(env={"VIGIL_DATA_DIR": str(data), "VIGIL_NATS_URL": url}), start_embedded=False
            )
            try:
                await publish_one(bus, decisions_subject("self_test"), encode_json(decision), decision.id)
            finally:
                await bus.close()

        asyncio.run(publish())

        def archiver_caught_up() -> bool:
            st = status(env)
            consumer = next(c for c in st["consumers"] if c["consumer"] == "decision-log-archiver")
            return consumer["ack_floor"] >= 1

        wait(archiver_caught_up)
    finally:
        started = time.monotonic()
        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the foreground group
        code = up.wait(60)
    assert code == 0, up_log.read_text()[-3000:]
    # services drained while NATS still served them (NATS is stopped last), none had to be killed
    assert "stopped." in up_log.read_text() and "did not stop in time" not in up_log.read_text()
    assert time.monotonic() - started < 15
    assert not (data / "run" / "nats.url").exists()
    rows = (
        duckdb.connect(str(data / "decisions.duckdb"), read_only=True)
        .execute("SELECT id, source, message FROM decisions WHERE id = 'walking-skeleton-1'")
        .fetchall()
    )
    assert rows == [("walking-skeleton-1", "self_test", "hello archive")]
    assert vigil(env, "status").returncode == 1  # nothing runs any more, and it says so
