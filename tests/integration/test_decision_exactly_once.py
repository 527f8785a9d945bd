"""100k decisions through the intake socket into the archive while the archiver
is SIGKILLed twice and its sink is broken for a while: every decision exactly
once in the archive (ids compared).

Breaking the sink must work for root too (CI runs as root, where chmod stops
nothing): the archive's directory is swapped for a regular file, so opening
the DuckDB file fails with ENOTDIR/EEXIST for any user. The swap happens while
the archiver is dead and a new one starts against it: a live DuckDB keeps
writing through the descriptors it already holds, whatever happens to the
path, so the failure an operator meets is a (re)start onto a broken volume.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import duckdb
import pytest

from contracts.codec import decode_json
from contracts.subjects import DECISIONS, HEARTBEAT_BUCKET
from services.decision_intake.client import gatekeeper_line, send_lines
from services.decision_log_archiver.app import DURABLE
from services.runtime.bus import Bus
from services.runtime.embedded import EmbeddedServer
from tests.support import make_settings, open_bus, vigil_process, wait_for

N = 100_000


async def _acked(bus: Bus) -> int:
    try:
        info = await bus.js.consumer_info(DECISIONS, DURABLE)
    except Exception:  # noqa: BLE001 - consumer not created yet
        return 0
    return info.ack_floor.stream_seq if info.ack_floor else 0


async def _counter(bus: Bus, service: str, pid: int, name: str) -> int:
    """A counter from the heartbeat of one process (`vigil status` reads the same)."""
    kv = await bus.js.key_value(HEARTBEAT_BUCKET)
    try:
        keys = await kv.keys()
    except Exception:  # noqa: BLE001 - no keys yet
        return 0
    for key in keys:
        try:
            beat = decode_json("heartbeat", (await kv.get(key)).value)
        except Exception:  # noqa: BLE001 - deleted meanwhile
            continue
        if beat.service == service and beat.pid == pid:
            return int(beat.counters.get(name, 0))
    return 0


def test_100k_decisions_exactly_once_through_kills_and_a_broken_sink(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive_dir = tmp_path / "archive"
    overrides = {
        "ARCHIVE_PATH": str(archive_dir / "decisions.duckdb"),
        "NATS_ACK_WAIT": "2s",
        "ARCHIVE_RETRY_MAX": "0.5s",
        "TELEMETRY_HEARTBEAT_INTERVAL": "0.3s",
    }
    for key, value in overrides.items():
        monkeypatch.setenv(f"VIGIL_{key}", value)  # inherited by the `vigil` subprocesses
    settings = make_settings(tmp_path / "vigil", nats_server.url, **overrides)
    sock = tmp_path / "gk.sock"
    log = tmp_path / "archiver.log"

    async def scenario() -> tuple[list[dict[str, object]], int]:
        bus = await open_bus(settings)
        try:
            with vigil_process(settings, "intake", "--socket", str(sock)) as intake:
                await wait_for(sock.exists)
                sender = asyncio.create_task(send_lines(sock, (gatekeeper_line(i) for i in range(N)), chunk_lines=1000))
                with vigil_process(settings, "run", "decision-log-archiver", log=log) as first:
                    await wait_for(lambda: _over(bus, 15), timeout=60)  # messages: a chunk is one DecisionBatch
                    first.send_signal(signal.SIGKILL)
                os.rename(archive_dir, tmp_path / "archive.away")
                archive_dir.write_text("not a directory: the sink fails for root too\n")
                with vigil_process(settings, "run", "decision-log-archiver", log=log) as second:
                    await wait_for(lambda: _failing(bus, second.pid), timeout=30)
                    stuck_at = await _acked(bus)
                    archive_dir.unlink()
                    os.rename(tmp_path / "archive.away", archive_dir)
                    await wait_for(lambda: _over(bus, max(stuck_at, 50)), timeout=60)
                    second.send_signal(signal.SIGKILL)
                with vigil_process(settings, "run", "decision-log-archiver", log=log) as third:
                    answers = await sender
                    await wait_for(lambda: _intake_accepted(bus, intake.pid), timeout=30)
                    total = (await bus.js.stream_info(DECISIONS)).state.last_seq
                    await wait_for(lambda: _over(bus, total), timeout=60)
                    third.send_signal(signal.SIGTERM)
                    third.wait(30)
            return answers, total
        finally:
            await bus.close()

    async def _over(bus: Bus, n: int) -> bool:
        return await _acked(bus) >= n

    async def _failing(bus: Bus, pid: int) -> bool:
        return await _counter(bus, DURABLE, pid, "commit_retries") >= 2  # commits failed and are being retried

    async def _intake_accepted(bus: Bus, pid: int) -> bool:
        return await _counter(bus, "decision-intake", pid, "accepted") == N

    answers, total = asyncio.run(scenario())
    assert len(answers) == N and all(a["ok"] for a in answers)
    con = duckdb.connect(str(archive_dir / "decisions.duckdb"), read_only=True)
    ids = [row[0] for row in con.execute("SELECT id FROM decisions").fetchall()]
    assert len(ids) == N
    assert set(ids) == {f"d-{i:08d}" for i in range(N)}
    assert con.execute("SELECT seq FROM positions WHERE stream = 'DECISIONS'").fetchone() == (total,)
    assert total < N // 500  # the intake batched its lines: ~1,000 decisions a message
    restarts = log.read_text().count("commit failed")
    assert restarts >= 2, "the sink should have failed while the directory was gone"
    shutil.rmtree(archive_dir)
