"""Stream limits from settings, applied to existing streams in place (a real nats-server)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from contracts.subjects import DEADLETTER, DRIFT, EVENTS, events_subject
from services.runtime.bus import StreamLimitError, connect, ensure_streams
from tests.support import make_settings


def test_limits_are_applied_to_existing_streams_in_place(nats_server: Any, tmp_path: Path) -> None:
    async def scenario() -> tuple[Any, Any, Any, Any]:
        plain = make_settings(tmp_path, nats_server.url, STREAMS_EVENTS_MAX_BYTES="0", STREAMS_DEADLETTER_MAX_AGE="7d")
        bus = await connect(plain, start_embedded=False)
        try:
            await ensure_streams(bus.js, plain)
            for i in range(50):
                await bus.js.publish(events_subject(i % 2), b"x" * 1000)
            before = await bus.js.stream_info(EVENTS)
            bounded = make_settings(
                tmp_path, nats_server.url, STREAMS_EVENTS_MAX_BYTES="20KiB", STREAMS_DEADLETTER_MAX_AGE="1h"
            )
            await ensure_streams(bus.js, bounded)
            after = await bus.js.stream_info(EVENTS)
            refused: Exception | None = None
            try:
                await bus.js.publish(events_subject(0), b"y" * 1000)
            except Exception as exc:  # noqa: BLE001 - what JetStream answers is the point
                refused = exc
            return before, after, await bus.js.stream_info(DEADLETTER), refused
        finally:
            await bus.close()

    before, after, dlq, refused = asyncio.run(scenario())
    assert after.config.max_bytes == 20 * 1024 and after.config.discard == "new"
    # updated, not recreated: same creation time, every message still there
    assert after.created == before.created
    assert (after.state.messages, after.state.first_seq) == (50, 1)
    assert dlq.config.max_age == 3600
    assert after.config.max_age in (None, 0)  # EVENTS' age is compaction's, never JetStream's expiry
    assert refused is not None  # over the limit: the write is refused, nothing old is dropped


def test_a_limit_the_server_cannot_hold_names_the_stream_keys(nats_server: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        huge = make_settings(tmp_path, nats_server.url, STREAMS_EVENTS_MAX_BYTES="900TiB")
        bus = await connect(huge, start_embedded=False)
        try:
            await ensure_streams(bus.js, huge)
        finally:
            await bus.close()

    with pytest.raises(StreamLimitError, match=r"streams\.events\.max_bytes"):
        asyncio.run(scenario())


def test_a_service_whose_output_stream_is_full_waits_and_goes_on(nats_server: Any, tmp_path: Path) -> None:
    """DRIFT at its limit refuses the learner's drift: the learner holds its input unacked
    (back-pressure), keeps running, and goes on once DRIFT has room."""
    from collector.publisher import BatchingPublisher
    from services.profile_learner.app import ProfileLearner, backlog
    from tests.integration.test_storage_compaction import ENV, load
    from tests.support import open_bus, running, wait_for

    settings = make_settings(tmp_path / "vigil", nats_server.url, STREAMS_DRIFT_MAX_BYTES="256KiB", **ENV)

    async def scenario() -> tuple[bool, int]:
        bus = await open_bus(settings)
        try:
            async with running(ProfileLearner(settings), settings):
                async with bus.publisher() as pub:
                    batcher = BatchingPublisher(pub, "n1", "boot-drift", settings.nats.partitions, 200)
                    await batcher.add_all(load(images=10, rounds=400))
                    await batcher.drain()

                async def stalled_on_full_drift() -> bool:
                    drift = (await bus.js.stream_info(DRIFT)).state.bytes
                    return drift > 192 * 1024 and await backlog(bus.js, settings.nats.partitions) > 0

                stalled = bool(await wait_for(stalled_on_full_drift, timeout=60))

                async def room_until_done() -> bool:
                    await bus.js.purge_stream(DRIFT)  # an operator (or a consumer's compaction) makes room
                    return await backlog(bus.js, settings.nats.partitions) == 0

                await wait_for(room_until_done, timeout=120, interval=0.2)
                return stalled, await backlog(bus.js, settings.nats.partitions)
        finally:
            await bus.close()

    stalled, left = asyncio.run(scenario())
    assert stalled and left == 0


def test_the_runners_publisher_waits_for_room_instead_of_failing(nats_server: Any, tmp_path: Path) -> None:
    from services.runtime.bus import Publisher
    from services.runtime.errors import StreamFull
    from tests.support import open_bus, wait_for

    settings = make_settings(tmp_path / "vigil", nats_server.url, STREAMS_DRIFT_MAX_BYTES="8KiB")

    async def scenario() -> tuple[bool, int]:
        bus = await open_bus(settings)
        try:
            await bus.js.publish("vigil.drift.0", b"x" * 7000)
            async with Publisher(bus.nc, retries=1) as failing:
                await failing.publish("vigil.drift.0", b"y" * 2000, "full-1")
                try:
                    await failing.flush()
                    gave_up = False
                except StreamFull:
                    gave_up = True
            async with Publisher(bus.nc, retries=1) as waiting:
                waiting.wait_when_full = True
                await waiting.publish("vigil.drift.0", b"y" * 2000, "full-2")
                flushing = asyncio.create_task(waiting.flush())
                await wait_for(lambda: waiting.full_waits >= 3)  # more rounds than its retries, still waiting
                assert not flushing.done()
                await bus.js.purge_stream(DRIFT)
                acks = await asyncio.wait_for(flushing, 30)
            return gave_up, acks[0].seq
        finally:
            await bus.close()

    gave_up, seq = asyncio.run(scenario())
    assert gave_up and seq > 1
