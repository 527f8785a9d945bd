"""Gatekeeper's export as it ships, end to end on a real nats-server and DuckDB file:

- files written exactly as the disk driver writes them (gatekeeper @
  dd8507eb97f5ca24dbee34c95d8e6ffa053cb8a0, ``pkg/export/disk/audit_file.go``: ``<run>.txt``
  opened in append mode at the start marker, renamed ``.log`` after the completion marker,
  then ``.log`` files beyond ``maxAuditResults`` deleted oldest first;
  ``admission_file.go``: ``admission-….open`` renamed ``.log``, removed by way of
  ``.log.deleting``), followed by `vigil intake --gatekeeper-dir` SIGKILLed in the middle
  and started again: every violation archived once, the audit-run files of the runs kept;
- a file deleted while the follower holds it loses nothing; one that vanished before
  Vigil read it all is counted;
- a Dapr CloudEvent (components-contrib @ c23900d2760de2061143587c16c5e30ab3f092cf,
  ``pubsub/jetstream/jetstream.go``: published on the topic's subject with Nats-Msg-Id =
  the envelope id) is archived once, however often it is sent.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import msgspec

from contracts.codec import decode_json
from contracts.decisions import Decision
from contracts.intake import Accepted, normalise
from contracts.subjects import DEADLETTER, DECISIONS, INTAKE_DECISIONS
from services.audit_report_writer.app import AuditReportWriter
from services.decision_intake.client import GatekeeperDisk, admission_line, export_line, export_marker
from services.decision_intake.directory import STATE_FILE, Follower
from services.decision_log_archiver import client, query
from services.decision_log_archiver.app import DURABLE, Archiver
from services.runtime.bus import Bus, Publisher
from services.runtime.settings import Settings
from tests.support import decisions_in, make_settings, open_bus, read_stream, running, vigil_process, wait_for

RUNS = [f"2026-01-10T0{h}:00:00Z" for h in range(1, 5)]


def _id(line: bytes) -> str:
    result = normalise(line)
    assert isinstance(result, Accepted) and isinstance(result.message, Decision)
    return result.message.id


async def _archived(bus: Bus) -> list[tuple[str, int]]:
    try:
        result = await client.ask(bus, query.QueryRequest(sql="SELECT id, count(*) FROM decisions GROUP BY id"))
    except (query.QueryFailed, client.NoArchiver):
        return []
    return [(str(i), int(n)) for i, n in result.rows]


async def _has(bus: Bus, n: int) -> bool:
    return len(await _archived(bus)) >= n


def test_disk_export_followed_across_a_restart_every_violation_archived_once(nats_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "vigil", nats_server.url, DECISION_INTAKE_GATEKEEPER_POLL_INTERVAL="0.05s")
    root = tmp_path / "violations" / "topics"  # the Connection's path; the driver writes under <path>/<channel>
    disk = GatekeeperDisk(root, max_audit_results=2)
    written: list[bytes] = []

    def violations(run: str, first: int, n: int) -> None:
        for i in range(first, first + n):
            line = export_line(i, run)
            disk.write(line)
            written.append(line)

    async def scenario() -> None:
        bus = await open_bus(settings)
        try:
            async with running(Archiver(settings), settings), running(AuditReportWriter(settings), settings):
                log = tmp_path / "intake.log"
                with vigil_process(settings, "intake", "--gatekeeper-dir", str(root), log=log) as intake:
                    disk.start(RUNS[0])
                    for part in range(4):
                        violations(RUNS[0], part * 50, 50)
                        await asyncio.sleep(0.05)  # the follower reads the run while it is written
                    disk.complete()
                    await wait_for(lambda: _has(bus, 200), timeout=60)
                    disk.start(RUNS[1])
                    violations(RUNS[1], 0, 100)
                    disk.write(b"{not json")  # a bad line: a dead letter, the rest unaffected
                    await wait_for(lambda: _has(bus, 300), timeout=60)
                    intake.send_signal(signal.SIGKILL)  # mid-run: the .txt is open, its offset saved
                violations(RUNS[1], 100, 100)  # written while no intake runs
                disk.complete()
                segment = disk.open_segment("20260110T023000.000000000Z-0a1b2c3d4e5f6071")
                admissions = [admission_line(i, f"req-{i // 3}") for i in range(30)]
                disk.append(segment, admissions)
                written.extend(admissions)
                with vigil_process(settings, "intake", "--gatekeeper-dir", str(root), log=log):
                    await wait_for(lambda: _has(bus, 430), timeout=60)
                    ready = disk.finish_segment(segment)
                    for n, run in enumerate(RUNS[2:]):
                        disk.start(run)
                        violations(run, 0, 50)
                        disk.complete()  # retention deletes the oldest runs, read already
                        await wait_for(lambda n=n: _has(bus, 480 + 50 * n), timeout=60)
                    disk.delete_segment(ready)  # Gatekeeper's admission retention
                    await asyncio.sleep(0.3)  # a few passes over the directory without those files
                await wait_for(lambda: _audit_log_of(settings, RUNS[3]) is not None, timeout=60)
                archived = await _archived(bus)
                letters = [decode_json("dead_letter", m.data) for m in await read_stream(bus, DEADLETTER)]
                published = decisions_in(await read_stream(bus, DECISIONS, INTAKE_DECISIONS))
        finally:
            await bus.close()
        assert sorted(archived) == sorted((_id(line), 1) for line in written)  # every violation, once
        # … and read once: the restarted follower went on from the saved offsets, it did not read again
        assert sorted(d.id for d in published if isinstance(d, Decision)) == sorted(map(_id, written))
        assert [(letter.service, letter.reason[:12], letter.payload) for letter in letters] == [
            ("decision-intake", "invalid JSON", b"{not json")
        ]
        assert "vanished" not in log.read_text()

    asyncio.run(scenario())
    assert sorted(p.name for p in disk.dir.iterdir()) == ["2026-01-10T03_00_00Z.log", "2026-01-10T04_00_00Z.log"]
    state = json.loads((settings.data_path / STATE_FILE).read_text())
    assert sorted(Path(f["path"]).name for f in state["files"].values()) == sorted(p.name for p in disk.dir.iterdir())
    for run, n in zip(RUNS[1:], (200, 50, 50), strict=True):  # the audit writer's files of the runs it keeps
        summary = _audit_log_of(settings, run)
        assert summary is not None and summary["violations"] == n, (run, summary)


def _audit_log_of(settings: Settings, run: str) -> dict[str, object] | None:
    path = settings.data_path / "audit" / (run.replace(":", "_") + ".json")
    return json.loads(path.read_text()) if path.exists() else None


def test_deleted_while_read_loses_nothing_and_vanished_unread_is_counted(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "topics"
    disk = GatekeeperDisk(root)

    async def scenario() -> tuple[Follower, list[Decision]]:
        bus = await open_bus(settings)
        pub = await Publisher(bus.nc).start()
        follower = Follower(settings, bus, root)
        follower.load()
        try:
            disk.start(RUNS[0])
            disk.write(export_line(0, RUNS[0]))
            await follower.step(pub)
            disk.write(export_line(1, RUNS[0]))  # appended, then the file is removed before the next pass
            (disk.dir / "2026-01-10T01_00_00Z.txt").unlink()
            await follower.step(pub)  # read through the descriptor it holds
            disk.start(RUNS[1])
            disk.write(export_line(2, RUNS[1]))
            await follower.step(pub)
            follower.close()  # Vigil stops …
            disk.write(export_line(3, RUNS[1]))  # … Gatekeeper writes on, then the file is removed
            (disk.dir / "2026-01-10T02_00_00Z.txt").unlink()
            restarted = Follower(settings, bus, root, follower.counters, follower.samples)
            restarted.load()
            for _ in range(2):  # missing from two listings in a row: gone
                await restarted.step(pub)
            restarted.close()
            stored = [d for d in decisions_in(await read_stream(bus, DECISIONS)) if isinstance(d, Decision)]
            return restarted, stored
        finally:
            await pub.close()
            await bus.close()

    follower, stored = asyncio.run(scenario())
    assert sorted(d.id for d in stored) == sorted(_id(export_line(i, RUNS[i // 2])) for i in range(3))
    assert follower.counters["dir_files_lost"] == 1
    assert follower.samples["dir_files_lost"] == [str(root / "audit-channel" / "2026-01-10T02_00_00Z.txt")]
    assert follower.files == {}


def cloud_event(line: bytes, event_id: str) -> bytes:
    """Gatekeeper's Dapr driver → Dapr: text/plain data (the ExportMsg JSON as a string)."""
    envelope = {
        "id": event_id, "specversion": "1.0", "source": "audit", "type": "com.dapr.event.sent",
        "datacontenttype": "text/plain", "data": line.decode(), "topic": INTAKE_DECISIONS, "pubsubname": "pubsub",
        "traceid": "", "traceparent": "", "tracestate": "", "time": "2026-01-10T01:00:01Z",
    }  # fmt: skip
    return msgspec.json.encode(envelope)


def test_a_dapr_cloud_event_on_nats_is_archived_once(settings: Settings) -> None:
    line = export_line(7, RUNS[0])
    sent = [
        (cloud_event(export_marker(RUNS[0], True), "e-0"), "e-0"),
        (cloud_event(line, "e-1"), "e-1"),
        (cloud_event(line, "e-1"), "e-1"),  # Dapr's retry: the same envelope, dropped by JetStream
        (cloud_event(line, "e-2"), "e-2"),  # published again: a new envelope, the same decision
    ]

    async def scenario() -> tuple[list[tuple[str, int]], int]:
        bus = await open_bus(settings)
        try:
            async with running(Archiver(settings), settings):
                async with Publisher(bus.nc) as pub:
                    for data, event_id in sent:
                        await pub.publish(INTAKE_DECISIONS, data, event_id)  # as pubsub.jetstream does
                    await pub.flush()
                last = (await bus.js.stream_info(DECISIONS)).state.last_seq
                await wait_for(lambda: _acked(bus, last))
                return await _archived(bus), last
        finally:
            await bus.close()

    archived, stored = asyncio.run(scenario())
    assert stored == 3
    assert archived == [(_id(line), 1)]


async def _acked(bus: Bus, seq: int) -> bool:
    try:
        info = await bus.js.consumer_info(DECISIONS, DURABLE)
    except Exception:  # noqa: BLE001 - the archiver has not created its consumer yet
        return False
    return bool(info.ack_floor and info.ack_floor.stream_seq >= seq)


def test_a_fresh_follower_reads_a_directory_gatekeeper_filled_before_it_started(
    settings: Settings, tmp_path: Path
) -> None:
    """Runs completed (and an admission segment published) before Vigil first looked are
    read from their beginning; reading the same directory again stores nothing new."""
    disk = GatekeeperDisk(tmp_path / "topics")
    disk.start(RUNS[0])
    for i in range(3):
        disk.write(export_line(i, RUNS[0]))
    disk.complete()
    disk.finish_segment(disk.open_segment("x")).write_bytes(b"")  # an empty segment: nothing to read

    async def scenario() -> tuple[int, int]:
        bus = await open_bus(settings)
        pub = await Publisher(bus.nc).start()
        try:
            counts = []
            for _ in range(2):  # a second follower with the saved offsets: nothing more
                follower = Follower(settings, bus, disk.dir.parent)
                follower.load()
                await follower.step(pub)
                follower.close()
                counts.append(follower.counters["dir_accepted"])
            return counts[0], counts[1]
        finally:
            await pub.close()
            await bus.close()

    assert asyncio.run(scenario()) == (5, 0)


def test_a_new_file_on_the_inode_of_a_file_read_before_is_read_from_its_start(
    settings: Settings, tmp_path: Path
) -> None:
    """Gatekeeper deleted a run Vigil had read and a new run got its inode (and, the lines
    being alike, its size) while Vigil was down: the new file is read, not taken for the old."""
    disk = GatekeeperDisk(tmp_path / "topics", max_audit_results=1)

    def run(audit_id: str) -> None:
        disk.start(audit_id)
        disk.write(export_line(0, audit_id))
        disk.complete()  # the older run's file is deleted: one result kept

    async def scenario() -> list[str]:
        bus = await open_bus(settings)
        pub = await Publisher(bus.nc).start()
        try:
            run(RUNS[0])
            follower = Follower(settings, bus, disk.dir.parent)
            follower.load()
            await follower.step(pub)
            follower.close()
            ((old_key, old_state),) = follower.files.items()
            run(RUNS[1])  # while Vigil is down
            new = next(disk.dir.iterdir()).stat()
            assert new.st_size == old_state.size
            follower = Follower(settings, bus, disk.dir.parent)
            follower.load()
            follower.files = {f"{new.st_dev}:{new.st_ino}": old_state}  # the inode reused
            await follower.step(pub)
            follower.close()
            return [d.id for d in decisions_in(await read_stream(bus, DECISIONS)) if isinstance(d, Decision)]
        finally:
            await pub.close()
            await bus.close()

    assert asyncio.run(scenario()) == [_id(export_line(0, RUNS[0])), _id(export_line(0, RUNS[1]))]
