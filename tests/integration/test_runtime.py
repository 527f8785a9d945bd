"""The runtime's promises, on a real nats-server: exactly-once effect across a
SIGKILL, deduplicated republishing, dead letters that do not stop consumption,
and configuration errors that name the key."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from collector.publisher import BatchingPublisher
from contracts.codec import decode_json, encode_batch
from contracts.events import Container, EventBatch, ExecObserved, Process
from contracts.subjects import DEADLETTER, events_subject
from services.profile_learner.app import ProfileLearner
from services.runtime.on_faststream import faststream_log
from services.runtime.settings import Settings
from tests.integration.echo_app import ECHO_STREAM
from tests.support import heartbeat_pids, make_settings, open_bus, read_stream, running, service_env, wait_for

T0 = 1_767_225_600_000_000_000


def exec_event(i: int, images: int = 5) -> ExecObserved:
    return ExecObserved(
        time=T0 + i * 1000,
        node="n1",
        container=Container(id=f"c{i % 17}", image_name=f"img{i % images}", image_tag="1"),
        process=Process(pid=1000 + i, path=f"/usr/bin/tool{i % 40}"),
    )


async def _publish(settings: Settings, n: int, boot: str = "b1", batch_size: int = 200) -> list[str]:
    bus = await open_bus(settings)
    try:
        async with bus.publisher() as pub:
            batcher = BatchingPublisher(pub, "n1", boot, settings.nats.partitions, batch_size)
            await batcher.add_all(exec_event(i) for i in range(n))
            await batcher.drain()
        ids = []
        for p in range(settings.nats.partitions):
            ids += [f"n1:{boot}:{p}:{s}" for s in range(batcher.next_seq[p])]
        return ids
    finally:
        await bus.close()


def _start_echo(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.echo_app"], env=service_env(settings), stdout=out, stderr=out
    )


async def _kill_mid_stream_then_finish(settings: Settings, log: Path) -> tuple[int, list[str]]:
    """Start the echo service, SIGKILL it twice while it is working, then let a
    third instance finish and stop it with SIGTERM. Returns (kills, echoed ids)."""
    bus = await open_bus(settings)
    try:
        total = (await bus.js.stream_info("EVENTS")).state.messages

        async def floor() -> int:
            try:
                return (await bus.js.consumer_info("EVENTS", "echo")).ack_floor.stream_seq
            except Exception:  # noqa: BLE001 - consumer not created yet
                return 0

        async def echoed() -> int:
            try:
                return (await bus.js.stream_info(ECHO_STREAM.name)).state.messages
            except Exception:  # noqa: BLE001 - stream not created yet
                return 0

        kills = 0
        for _ in range(2):
            proc = _start_echo(settings, log)
            try:
                target = await echoed() + total // 8
                await wait_for(lambda t=target: _at_least(echoed, t), timeout=60, interval=0.002)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            assert await floor() < total, "killed too late: the instance had finished"
            kills += 1
        proc = _start_echo(settings, log)
        try:
            await wait_for(lambda: _at_least(floor, total), timeout=120)
            await wait_for(lambda: _alive(settings, proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
        assert code == 0, log.read_text()[-2000:]
        msgs = await read_stream(bus, ECHO_STREAM.name)
        return kills, [eid for m in msgs for eid in msgspec.json.decode(m.data)]
    finally:
        await bus.close()


async def _at_least(value: Any, target: int) -> bool:
    return await value() >= target


async def _alive(settings: Settings, pid: int) -> bool:
    return pid in await heartbeat_pids(settings, "echo")


def test_100k_events_consumed_exactly_once_across_sigkill(nats_server: Any, tmp_path: Path) -> None:
    # a short ack wait: what a killed instance had in flight is redelivered sooner;
    # small fetches and batches: the consumer works long enough to be killed mid-stream
    settings = make_settings(tmp_path / "vigil", nats_server.url, NATS_ACK_WAIT="2s", NATS_FETCH_BATCH="4")
    expected = asyncio.run(_publish(settings, 100_000, batch_size=50))
    assert len(expected) == 100_000
    kills, echoed = asyncio.run(_kill_mid_stream_then_finish(settings, tmp_path / "echo.log"))
    counts = Counter(echoed)
    assert kills == 2
    assert set(counts) == set(expected)
    assert [eid for eid, c in counts.items() if c > 1] == []


def test_republishing_the_same_batch_is_deduplicated(settings: Settings) -> None:
    async def scenario() -> tuple[list[bool], int]:
        bus = await open_bus(settings)
        try:
            batch = EventBatch(node="n1", boot="b", first_seq=0, partition=0, events=[exec_event(1)])
            dup_flags = []
            for _ in range(3):
                async with bus.publisher() as pub:
                    await pub.publish(events_subject(0), encode_batch(batch), batch.id)
                    dup_flags += [a.duplicate for a in await pub.flush()]
            return dup_flags, (await bus.js.stream_info("EVENTS")).state.messages
        finally:
            await bus.close()

    flags, stored = asyncio.run(scenario())
    assert flags == [False, True, True]
    assert stored == 1


def test_undecodable_message_is_dead_lettered_and_consumption_goes_on(settings: Settings) -> None:
    async def scenario() -> tuple[list[object], int]:
        bus = await open_bus(settings)
        try:
            async with bus.publisher() as pub:
                await pub.publish(events_subject(0), b"\xc1 not msgpack", "garbage-1")
                good = EventBatch(
                    node="n1", boot="b", first_seq=0, partition=0, events=[exec_event(i) for i in range(3)]
                )
                await pub.publish(events_subject(0), encode_batch(good), good.id)
                await pub.flush()
            learner = ProfileLearner(settings)
            async with running(learner, settings):
                await wait_for(lambda: learner.counters["in"] >= 2)
            letters = [decode_json("dead_letter", m.data) for m in await read_stream(bus, DEADLETTER)]
            return letters, learner.counters["dead_letters"]
        finally:
            await bus.close()

    letters, counted = asyncio.run(scenario())
    assert counted == 1
    assert len(letters) == 1
    letter = letters[0]
    assert letter.service == "profile-learner"
    assert "not an EventBatch" in letter.reason
    assert letter.payload == b"\xc1 not msgpack"
    assert letter.stream == "EVENTS" and letter.stream_seq == 1


def test_faststream_logs_through_vigils_logger_without_its_per_task_chatter(settings: Settings, caplog: Any) -> None:
    """FastStream's supervisor says "callback for Task-N is being executed..." at INFO
    each time a subscriber task ends (every round, every stop): it reaches a service's
    log only when vigil.faststream is set to INFO; FastStream's errors always do."""

    async def start_and_stop() -> None:
        learner = ProfileLearner(settings)
        async with running(learner, settings):
            await wait_for(lambda: len(learner.parts) == settings.nats.partitions)

    def chatter() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "is being executed" in r.getMessage()]

    caplog.set_level(logging.DEBUG)
    asyncio.run(start_and_stop())
    assert chatter() == []
    caplog.clear()
    faststream_log.setLevel(logging.INFO)
    try:
        asyncio.run(start_and_stop())
    finally:
        faststream_log.setLevel(logging.WARNING)
    assert chatter() and {r.name for r in chatter()} == {"vigil.faststream"}


def test_bad_config_value_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    env = {**os.environ, "VIGIL_DATA_DIR": str(tmp_path), "VIGIL_MAX_ALERT_PER_SEC": "lots"}
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "run", "throttler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "max_alert_per_sec" in proc.stderr
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("runtime_security_config:\n  security_profile:\n    max_image_tag: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "config", "show", "--config", str(cfg)],
        env=env | {"VIGIL_MAX_ALERT_PER_SEC": "5"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "runtime_security_config.security_profile.max_image_tag" in proc.stderr
    assert "unknown key" in proc.stderr


def test_every_batch_carries_its_largest_event_time_in_a_header(settings: Settings) -> None:
    from contracts.codec import decode_batch
    from contracts.events import MAX_TIME_HEADER

    async def scenario() -> list[tuple[str | None, int]]:
        await _publish(settings, 1000, batch_size=64)
        bus = await open_bus(settings)
        try:
            msgs = await read_stream(bus, "EVENTS")
            return [
                ((m.headers or {}).get(MAX_TIME_HEADER), max(e.time for e in decode_batch(m.data).events)) for m in msgs
            ]
        finally:
            await bus.close()

    pairs = asyncio.run(scenario())
    assert len(pairs) > 4
    assert all(header == str(top) for header, top in pairs)
