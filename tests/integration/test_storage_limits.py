"""Stream limits from settings, applied to existing streams in place (a real nats-server)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from contracts.subjects import DEADLETTER, EVENTS, events_subject
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
