"""Snapshots of the single-consumer stateful services (anomaly-detector, throttler: SnapshotApp)
go to the shared object store, so an instance on another host starts from them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collector.publisher import BatchingPublisher
from contracts.subjects import EVENTS, ConsumerSpec
from services.runtime.service import Incoming, Outgoing
from services.runtime.settings import Settings
from services.runtime.snapshots import SnapshotApp
from tests.integration.test_runtime import exec_event
from tests.support import make_settings, open_bus, running, wait_for


class Counter(SnapshotApp):
    """State = how many EVENTS messages it has seen."""

    name = "snapshot-counter"
    consumers = (ConsumerSpec(EVENTS, "snapshot-counter"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.seen = 0

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        self.seen += 1
        return ()

    def export_state(self) -> bytes:
        return str(self.seen).encode()

    def restore_state(self, data: bytes) -> None:
        self.seen = int(data)

    def replay(self, subject: str, data: bytes) -> None:
        self.seen += 1


def test_a_snapshot_app_on_another_host_starts_from_the_shared_snapshot(nats_server: Any, tmp_path: Path) -> None:
    host_a = make_settings(tmp_path / "host-a", nats_server.url)
    host_b = make_settings(tmp_path / "host-b", nats_server.url)

    async def scenario() -> tuple[int, int, int]:
        bus = await open_bus(host_a)
        try:
            async with bus.publisher() as pub:
                batcher = BatchingPublisher(pub, "n1", "boot-shared", host_a.nats.partitions, 50)
                await batcher.add_all(exec_event(i) for i in range(1000))
                await batcher.drain()
            total = (await bus.js.stream_info(EVENTS)).state.messages
            first = Counter(host_a)
            async with running(first, host_a):
                await wait_for(lambda: first.seen == total)
            second = Counter(host_b)  # no snapshot file on this host
            await second.start(bus)
            return total, second.seen, second.counters["caught_up_messages"]
        finally:
            await bus.close()

    total, seen, replayed = asyncio.run(scenario())
    assert not (tmp_path / "host-b" / Counter.name / "snapshot.bin").exists()
    assert seen == total and replayed == 0  # the shared snapshot, not a replay of the log
