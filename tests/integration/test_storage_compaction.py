"""Bounded EVENTS on a real nats-server: a budget of 1 MiB under a load many times
that size. The design under test (docs/configuration.md, "Storage"): EVENTS has
discard *new* and is purged only below its safe point, so

- with every consumer running, nothing is lost: the learner's outputs equal those of
  a run without limits, the stream never exceeds its budget, and `vigil replay`
  (the shared base snapshot + the retained log) reproduces the snapshots;
- with a durable consumer stopped, nothing it has not acknowledged is removed: the
  stream refuses writes, the collector holds what it can and counts every event it
  drops, and the learner keeps running.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from nats.js import api as js_api

from collector.publisher import BatchingPublisher
from contracts.codec import decode_batch
from contracts.events import EVENT_TYPES, RawEvent
from contracts.subjects import DRIFT, EVENTS, PROFILES
from services.cli.replay import replay_profile_learner
from services.profile_learner.app import ProfileLearner, backlog
from services.runtime import embedded
from services.runtime.event_archive import read_archive
from services.runtime.settings import Settings
from services.runtime.storage import room_before_compaction
from tests.integration.test_profile_learner import busy_trace
from tests.support import make_settings, open_bus, read_stream, run_vigil, running, vigil_process, wait_for

SP = "RUNTIME_SECURITY_CONFIG_SECURITY_PROFILE_"
ENV = {
    SP + "SNAPSHOT_INTERVAL": "0.2s",
    SP + "ANOMALY_DETECTION_WORKLOAD_WARMUP_PERIOD": "5s",
    SP + "ANOMALY_DETECTION_UNSTABLE_PROFILE_TIME_THRESHOLD": "600s",
    **{SP + f"ANOMALY_DETECTION_MINIMUM_STABLE_PERIOD_{t.upper()}": "10s" for t in EVENT_TYPES},
    "NATS_ACK_WAIT": "2s",
}
BUDGET = 1 << 20  # EVENTS max_bytes in the bounded runs


def load(images: int = 30, rounds: int = 1500) -> list[RawEvent]:
    """Images learn, become stable, then repeat behaviour never learned (drift) and novel execs now and then."""
    return busy_trace(images, rounds, repeats="/usr/bin/known-{r7}")


def collector_batcher(pub: Any, bus: Any, settings: Settings, boot: str, hold_bytes: int) -> BatchingPublisher:
    """The collector's batching publisher: held batches, and pipelined only while EVENTS has room."""
    room = (lambda: room_before_compaction(bus.js, settings)) if hold_bytes else None
    return BatchingPublisher(pub, "n1", boot, settings.nats.partitions, 200, hold_bytes=hold_bytes, room=room)


def outputs(msgs: Sequence[Any]) -> list[tuple[str, str, bytes]]:
    return sorted((m.subject, (m.headers or {}).get("Nats-Msg-Id", ""), m.data) for m in msgs)


async def _publish(settings: Settings, bus: Any, events: list[RawEvent], hold_bytes: int) -> BatchingPublisher:
    """What the collector does: batches, held while EVENTS refuses them, retried."""
    async with bus.publisher() as pub:
        batcher = collector_batcher(pub, bus, settings, "boot-storage", hold_bytes)
        for i in range(0, len(events), 3000):
            await batcher.add_all(events[i : i + 3000])
            await batcher.drain()

        async def emptied() -> bool:
            await batcher.drain()
            return not batcher.held

        await wait_for(emptied, timeout=120, interval=0.05)
    return batcher


async def _bounded_run(settings: Settings, events: list[RawEvent], archive: Path | None = None) -> dict[str, Any]:
    bus = await open_bus(settings)
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, int((await bus.js.stream_info(EVENTS)).state.bytes))
            await asyncio.sleep(0.01)

    try:
        sampler = asyncio.create_task(sample())
        app = ProfileLearner(settings)
        async with running(app, settings):
            batcher = await _publish(settings, bus, events, settings.storage.collector_buffer_bytes)
            await wait_for(lambda: _caught_up(bus, settings), timeout=120)
        sampling = False
        await sampler
        info = await bus.js.stream_info(EVENTS)
        return {
            "profiles": outputs(await read_stream(bus, PROFILES)),
            "drift": outputs(await read_stream(bus, DRIFT)),
            "peak": peak,
            "first_seq": info.state.first_seq,
            "stored_bytes": info.state.bytes,
            "purged": app.counters["purged_events_messages"],
            "refused": batcher.refused,
            "dropped": dict(batcher.dropped),
            "replay": await replay_profile_learner(settings),
            "archive_replay": await replay_profile_learner(settings, archive) if archive else None,
            "archived": app.counters["archived_events_messages"],
            "retained": info.state.messages,
            "last_seq": info.state.last_seq,
        }
    finally:
        await bus.close()


async def _reference_run(tmp_path: Path, events: list[RawEvent]) -> dict[str, Any]:
    server = embedded.start(tmp_path / "ref-nats", port=-1)
    try:
        settings = make_settings(tmp_path / "ref", server.url, STREAMS_EVENTS_MAX_BYTES="0", **ENV)
        bus = await open_bus(settings)
        try:
            async with running(ProfileLearner(settings), settings):
                await _publish(settings, bus, events, 0)
                await wait_for(lambda: _caught_up(bus, settings), timeout=120)
            return {
                "profiles": outputs(await read_stream(bus, PROFILES)),
                "drift": outputs(await read_stream(bus, DRIFT)),
                "events_bytes": (await bus.js.stream_info(EVENTS)).state.bytes,
            }
        finally:
            await bus.close()
    finally:
        server.stop()


async def _caught_up(bus: Any, settings: Settings) -> bool:
    return await backlog(bus.js, settings.nats.partitions) == 0


@pytest.mark.slow
def test_a_small_events_budget_loses_nothing_and_replay_matches(nats_server: Any, tmp_path: Path) -> None:
    events = load()
    reference = asyncio.run(_reference_run(tmp_path, events))
    assert reference["events_bytes"] > 4 * BUDGET, "the load must be several times the budget"
    settings = make_settings(tmp_path / "vigil", nats_server.url, STREAMS_EVENTS_MAX_BYTES=str(BUDGET), **ENV)
    bounded = asyncio.run(_bounded_run(settings, events))

    assert bounded["dropped"] == {}  # every consumer ran: nothing was dropped, refused batches were held and retried
    assert bounded["profiles"] == reference["profiles"]
    assert bounded["drift"] == reference["drift"]
    assert bounded["peak"] <= BUDGET and bounded["stored_bytes"] <= BUDGET
    assert bounded["purged"] > 0 and bounded["first_seq"] > 1  # compaction did make the room
    assert bounded["purged"] + bounded["retained"] == bounded["last_seq"]  # and nothing else removed a message
    replay = bounded["replay"]
    assert replay["result"] == "match", replay
    assert replay["from_base_snapshots"] > 0  # rebuilt from the base the head was purged to, plus the retained log


async def _stopped_consumer_run(settings: Settings, events: list[RawEvent]) -> dict[str, Any]:
    bus = await open_bus(settings)
    try:
        # a durable reader of every partition that is stopped: it never acknowledges anything
        await bus.js.add_consumer(
            EVENTS, js_api.ConsumerConfig(durable_name="stopped-reader", ack_policy=js_api.AckPolicy.EXPLICIT)
        )
        app = ProfileLearner(settings)
        async with running(app, settings):
            async with bus.publisher() as pub:
                batcher = collector_batcher(pub, bus, settings, "boot-stop", 64 << 10)
                for i in range(0, len(events), 500):  # a drain per 500 events, as a live collector's timer does
                    await batcher.add_all(events[i : i + 500])  # never waits for room
                    await batcher.drain()
                await batcher.drain()
                held = sum(b.events for batches in batcher.held.values() for b in batches)
            # the learner keeps running: it consumes everything the full stream holds
            await wait_for(lambda: _caught_up(bus, settings), timeout=120)
        info = await bus.js.stream_info(EVENTS)
        stored = [decode_batch(m.data) for m in await read_stream(bus, EVENTS)]
        return {
            "first_seq": info.state.first_seq,
            "messages": info.state.messages,
            "last_seq": info.state.last_seq,
            "bytes": info.state.bytes,
            "stored_events": sum(len(b.events) for b in stored),
            "held": held,
            "batched": batcher.events,  # ticks go to every partition: counted once per partition
            "dropped": dict(batcher.dropped),
            "refused": batcher.refused,
            "purged": app.counters["purged_events_messages"],
        }
    finally:
        await bus.close()


@pytest.mark.slow
def test_a_stopped_consumer_keeps_everything_it_has_not_acknowledged(nats_server: Any, tmp_path: Path) -> None:
    events = load(rounds=600)
    settings = make_settings(tmp_path / "vigil", nats_server.url, STREAMS_EVENTS_MAX_BYTES=str(BUDGET), **ENV)
    run = asyncio.run(_stopped_consumer_run(settings, events))

    # nothing the stopped reader has not acknowledged was removed: the log is whole from seq 1
    assert run["first_seq"] == 1 and run["messages"] == run["last_seq"] and run["purged"] == 0
    assert run["bytes"] <= BUDGET
    # the stream refused the rest; every event that is not stored is held or counted, with its cause
    assert run["refused"] > 0
    assert run["dropped"].get("stream_full", 0) > 0
    assert run["batched"] >= len(events)
    assert run["stored_events"] + run["held"] + sum(run["dropped"].values()) == run["batched"]


async def _takeover(first: Settings, second: Settings, events: list[RawEvent], logs: Path) -> dict[str, Any]:
    """Learner A (its own data dir) runs while the load goes in and compaction purges the
    head of EVENTS; A is SIGKILLed; learner B, on another data dir (no snapshot files),
    takes every partition over from the shared snapshots and finishes."""
    bus = await open_bus(first)
    try:
        publishing = asyncio.create_task(_publish(first, bus, events, first.storage.collector_buffer_bytes))
        with vigil_process(first, "run", "profile-learner", log=logs / "a.log") as a:

            async def purged_and_busy() -> bool:
                info = await bus.js.stream_info(EVENTS)
                return info.state.first_seq > 1 and await backlog(bus.js, first.nats.partitions) > 0

            await wait_for(purged_and_busy, timeout=120, interval=0.02)
            a.send_signal(signal.SIGKILL)
            a.wait()
        head = (await bus.js.stream_info(EVENTS)).state.first_seq
        assert not list((second.data_path / "profile-learner").glob("*.msgpack"))  # B has no local snapshot
        with vigil_process(second, "run", "profile-learner", log=logs / "b.log") as b:
            batcher = await publishing
            await wait_for(lambda: _caught_up(bus, second), timeout=120)
            b.send_signal(signal.SIGTERM)
            b.wait(timeout=60)
        return {
            "profiles": outputs(await read_stream(bus, PROFILES)),
            "drift": outputs(await read_stream(bus, DRIFT)),
            "head_when_killed": head,
            "dropped": dict(batcher.dropped),
            "replay": await replay_profile_learner(second),
        }
    finally:
        await bus.close()


@pytest.mark.slow
def test_a_learner_on_another_host_takes_over_from_the_shared_snapshot(
    nats_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = load()
    reference = asyncio.run(_reference_run(tmp_path, events))
    env = {**ENV, "STREAMS_EVENTS_MAX_BYTES": str(BUDGET)}
    first = make_settings(tmp_path / "host-a", nats_server.url, **env)
    second = make_settings(tmp_path / "host-b", nats_server.url, **env)
    run = asyncio.run(_takeover(first, second, events, tmp_path))

    assert run["head_when_killed"] > 1  # the head of the log was purged before the takeover
    assert run["dropped"] == {}
    assert run["profiles"] == reference["profiles"]
    assert run["drift"] == reference["drift"]
    assert run["replay"]["result"] == "match", run["replay"]


@pytest.mark.slow
def test_history_beyond_retention_is_archived_and_replays_from_the_archive(nats_server: Any, tmp_path: Path) -> None:
    events = load(rounds=800)
    archive = tmp_path / "vigil" / "events-archive"
    settings = make_settings(
        tmp_path / "vigil",
        nats_server.url,
        STREAMS_EVENTS_MAX_BYTES=str(BUDGET),
        STORAGE_ARCHIVE_DIR="events-archive",
        **ENV,
    )
    run = asyncio.run(_bounded_run(settings, events, archive))

    assert run["dropped"] == {} and run["purged"] > 0
    # every message EVENTS ever stored is in the archive or still in the stream, once
    rows = sum(len(read_archive(archive, p)) for p in range(settings.nats.partitions))
    assert rows + run["retained"] == run["last_seq"]
    assert sorted(d.name for d in archive.iterdir()) and all(d.name.startswith("day=") for d in archive.iterdir())
    replay = run["archive_replay"]
    assert replay["result"] == "match", replay  # from nothing: the archive, then the retained log
    assert replay["from_archive"] == rows and replay["from_base_snapshots"] == 0
    # the same through the command line
    cli = run_vigil(settings, "replay", "profile-learner", "--from-archive", str(archive), "-o", "json")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout)["result"] == "match"
