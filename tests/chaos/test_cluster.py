"""Chaos on a 3-node JetStream cluster (R3 streams) on loopback: while a
service consumes, a NATS node is killed and restarted and the service is
SIGKILLed; every input's effect must appear exactly once."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from services.runtime import embedded
from services.runtime.bus import connect, ensure_buckets, retry_transient
from services.runtime.settings import Settings
from tests.integration.echo_app import ECHO_STREAM
from tests.integration.test_runtime import _publish, _start_echo
from tests.support import make_settings, open_bus, read_stream, wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[embedded.Cluster]:
    with embedded.start_cluster(tmp_path / "cluster", 3) as c:
        yield c


async def _ready(settings: Settings) -> None:
    """Until the cluster has a meta leader and the R3 streams exist."""

    async def attempt() -> bool:
        try:
            bus = await connect(settings, start_embedded=False)
        except Exception:  # noqa: BLE001
            return False
        try:
            await bus.ensure_streams()
            await bus.ensure_streams((ECHO_STREAM,))
            await ensure_buckets(bus)
            return True
        except Exception:  # noqa: BLE001 - no meta leader yet
            return False
        finally:
            await bus.close()

    await wait_for(attempt, timeout=30, interval=0.5)


async def _chaos(settings: Settings, cluster: embedded.Cluster, log: Path) -> tuple[list[str], list[str]]:
    bus = await open_bus(settings)
    try:
        total = (await bus.js.stream_info("EVENTS")).state.messages

        async def echoed() -> int:
            return (await bus.js.stream_info(ECHO_STREAM.name)).state.messages

        async def progressed(n: int) -> bool:
            try:
                return await echoed() >= n
            except Exception:  # noqa: BLE001 - a node is down: ask again
                return False

        actions = []
        proc = _start_echo(settings, log)
        await wait_for(lambda: progressed(total // 6), timeout=60, interval=0.005)
        cluster.kill(1)
        actions.append("killed nats node n1")
        await wait_for(lambda: progressed(total // 3), timeout=90, interval=0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        actions.append("SIGKILLed the service")
        cluster.start_node(1)
        actions.append("restarted n1")
        proc = _start_echo(settings, log)
        await wait_for(lambda: progressed(total // 2), timeout=90, interval=0.01)
        cluster.kill(0)
        actions.append("killed nats node n0")
        await wait_for(lambda: progressed(total), timeout=180, interval=0.05)
        cluster.start_node(0)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        msgs = await retry_transient("reading the echoes", lambda: read_stream(bus, ECHO_STREAM.name))
        return actions, [eid for m in msgs for eid in msgspec.json.decode(m.data)]
    finally:
        await bus.close()


@pytest.mark.slow
def test_exactly_once_while_nats_nodes_and_the_service_die(cluster: embedded.Cluster, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "vigil", cluster.url, NATS_REPLICAS="3", NATS_ACK_WAIT="2s", NATS_FETCH_BATCH="4"
    )
    asyncio.run(_ready(settings))
    expected = asyncio.run(_publish(settings, 50_000, batch_size=25))
    actions, echoed = asyncio.run(_chaos(settings, cluster, tmp_path / "echo.log"))
    assert actions == ["killed nats node n1", "SIGKILLed the service", "restarted n1", "killed nats node n0"]
    counts = Counter(echoed)
    assert set(counts) == set(expected), f"lost {len(set(expected) - set(counts))}"
    assert [eid for eid, c in counts.items() if c > 1] == []


async def _publish_through_failover(settings: Settings, cluster: embedded.Cluster, n: int) -> list[str]:
    from collector.publisher import BatchingPublisher
    from contracts.codec import decode_batch
    from tests.integration.test_runtime import exec_event

    bus = await connect(settings, start_embedded=False)
    try:
        async with bus.publisher() as pub:
            batcher = BatchingPublisher(pub, "n1", "failover", settings.nats.partitions, batch_size=20)
            for i in range(n):
                await batcher.add(exec_event(i))
                if i == n // 3:
                    # the node this publisher is connected to dies mid-stream
                    connected = bus.nc.connected_url.port if bus.nc.connected_url else None
                    cluster.kill(cluster.client_ports.index(connected))
                if i % 1000 == 0:
                    await batcher.flush_batches()
            await batcher.drain()
        cluster.start_node(cluster.nodes.index(None))  # read back from a whole cluster
        msgs = await retry_transient("reading EVENTS", lambda: read_stream(bus, "EVENTS"))
        return [eid for m in msgs for eid in decode_batch(m.data).event_ids()]
    finally:
        await bus.close()


@pytest.mark.slow
def test_collector_publishing_survives_the_death_of_its_nats_node(cluster: embedded.Cluster, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "vigil", cluster.url, NATS_REPLICAS="3")
    asyncio.run(_ready(settings))
    stored = asyncio.run(_publish_through_failover(settings, cluster, 30_000))
    counts = Counter(stored)
    assert len(counts) == 30_000, f"lost {30_000 - len(counts)} events"
    assert max(counts.values()) == 1
