"""Saying it before it hurts: one storage decision per headroom crossing, and the storage
table of `vigil status` (a real nats-server)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from contracts.codec import decode_json
from contracts.subjects import ALERTS, ALERTS_RAW, DECISIONS
from services.cli.main import _status
from services.runtime.storage import STORAGE_SUBJECT, check_headroom
from tests.support import make_settings, open_bus, read_stream

LIMIT = 64 << 10


async def _fill(bus: Any, upto: int) -> None:
    while (await bus.js.stream_info(ALERTS)).state.bytes < upto:
        await bus.js.publish(ALERTS_RAW, b"a" * 2000)


def test_a_storage_decision_is_published_once_per_crossing(nats_server: Any, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "vigil", nats_server.url, STREAMS_ALERTS_MAX_BYTES=str(LIMIT), STORAGE_HEADROOM_WARNING="0.5"
    )

    async def scenario() -> tuple[list[Any], list[Any], dict[str, Any]]:
        observers = [await open_bus(settings) for _ in range(2)]
        bus = observers[0]
        seen: list[Any] = []

        async def on_decision(msg: Any) -> None:
            seen.append(msg)

        sub = await bus.nc.subscribe(STORAGE_SUBJECT, cb=on_decision)
        try:
            await check_headroom(bus)  # every stream has room: nothing to say
            await _fill(bus, LIMIT * 0.6)
            for _ in range(3):  # two observers, several checks, one crossing
                await asyncio.gather(*(check_headroom(b) for b in observers))
            await bus.js.purge_stream(ALERTS)
            await asyncio.gather(*(check_headroom(b) for b in observers))
            await check_headroom(bus)
            await _fill(bus, LIMIT * 0.7)
            await asyncio.gather(*(check_headroom(b) for b in observers))
            status = await _status(settings)
            await bus.nc.flush()
            stored = await read_stream(bus, DECISIONS, STORAGE_SUBJECT)
            return stored, seen, status
        finally:
            await sub.unsubscribe()
            for b in observers:
                await b.close()

    stored, seen, status = asyncio.run(scenario())
    decisions = [decode_json("decision", m.data) for m in stored]
    assert [(d.id, d.action) for d in decisions] == [
        ("storage:ALERTS:1", "warn"),
        ("storage:ALERTS:2", "recovered"),
        ("storage:ALERTS:3", "warn"),
    ]
    assert all(d.source == "vigil" and d.event_type == "storage" and d.resource_name == ALERTS for d in decisions)
    assert [m.data for m in seen] == [m.data for m in stored]  # a downstream subscriber sees exactly these
    alerts = next(row for row in status["streams"] if row["stream"] == ALERTS)
    assert alerts["limit"] == LIMIT and alerts["headroom"].endswith("%") and float(alerts["headroom"][:-1]) < 50
    assert "archive_bytes" in status["summary"]


def test_a_crossing_claimed_by_an_observer_that_died_is_published_by_the_next(nats_server: Any, tmp_path: Path) -> None:
    import msgspec

    from contracts.subjects import SNAPSHOT_BUCKET
    from services.runtime.storage import HeadroomState

    settings = make_settings(
        tmp_path / "vigil", nats_server.url, STREAMS_ALERTS_MAX_BYTES=str(LIMIT), STORAGE_HEADROOM_WARNING="0.5"
    )

    async def scenario() -> list[Any]:
        bus = await open_bus(settings)
        try:
            await _fill(bus, LIMIT * 0.6)
            kv = await bus.js.key_value(SNAPSHOT_BUCKET)  # claimed crossing 1, never published (its claimer died)
            await kv.put("storage.ALERTS", msgspec.json.encode(HeadroomState(low=True, crossings=1, published=False)))
            await check_headroom(bus, [ALERTS], stale_s=0)
            await check_headroom(bus, [ALERTS], stale_s=0)  # published now: nothing more
            return [decode_json("decision", m.data) for m in await read_stream(bus, DECISIONS, STORAGE_SUBJECT)]
        finally:
            await bus.close()

    assert [(d.id, d.action) for d in asyncio.run(scenario())] == [("storage:ALERTS:1", "warn")]
