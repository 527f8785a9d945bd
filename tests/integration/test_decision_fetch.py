"""The queue fetch the archiver opts into (services/runtime/fetch.py), against a
real nats-server: at most a batch per call, a short batch returned without
waiting out the timeout, nothing at all → TimeoutError, and messages arriving
during a lingering request neither lost nor returned twice."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest

from contracts.subjects import DECISIONS, ConsumerSpec
from services.runtime.bus import Bus, unsubscribe_quietly
from services.runtime.fetch import fetch
from services.runtime.settings import Settings
from tests.support import make_settings, open_bus, wait_for

SUBJECT = "vigil.decisions.fetch-test"


async def _publish(bus: Bus, first: int, n: int) -> None:
    async with bus.publisher() as pub:
        for i in range(first, first + n):
            await pub.publish(SUBJECT, b"%d" % i, f"fetch-{i}")
        await pub.flush()


async def _fetch_acked(sub, batch: int, timeout: float) -> list[int]:  # type: ignore[no-untyped-def]
    msgs = await fetch(sub, batch, timeout)
    for msg in msgs:
        await msg.ack()
    return [int(msg.data) for msg in msgs]


def test_batches_short_batch_and_timeout(settings: Settings) -> None:
    async def main() -> None:
        bus = await open_bus(settings)
        try:
            await _publish(bus, 0, 25)
            sub = await bus.pull(ConsumerSpec(DECISIONS, "fetch-batches"))
            assert await _fetch_acked(sub, 10, 5) == list(range(10))
            assert await _fetch_acked(sub, 10, 5) == list(range(10, 20))
            # 5 left: returned at once (a full 10 would need a lingering request to expire)
            assert await asyncio.wait_for(_fetch_acked(sub, 10, 30), 10) == list(range(20, 25))
            with pytest.raises(nats.errors.TimeoutError):
                await fetch(sub, 10, 0.3)
        finally:
            await bus.close()

    asyncio.run(main())


async def _lingering(bus: Bus, durable: str) -> bool:
    """A pull request is open on the consumer (JetStream counts it as waiting)."""
    return (await bus.js.consumer_info(DECISIONS, durable)).num_waiting > 0


def test_messages_during_a_lingering_request_come_once(settings: Settings) -> None:
    async def main() -> None:
        bus = await open_bus(settings)
        try:
            sub = await bus.pull(ConsumerSpec(DECISIONS, "fetch-linger"))
            waiting = asyncio.create_task(_fetch_acked(sub, 50, 10))
            await wait_for(lambda: _lingering(bus, "fetch-linger"))  # the no_wait request found nothing
            await _publish(bus, 0, 30)
            got = await waiting
            assert got and len(got) <= 50
            await _publish(bus, 30, 30)  # partly to the lingering request left open, partly to the next one
            while len(got) < 60:
                got += await _fetch_acked(sub, 50, 5)
            assert got == list(range(60))  # in order, each once
            with pytest.raises(nats.errors.TimeoutError):
                await fetch(sub, 50, 0.3)
        finally:
            await bus.close()

    asyncio.run(main())


def test_a_fetch_batch_larger_than_max_ack_pending_is_not_capped(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A batch is acked after its commit, so the consumer's ack-pending limit must hold a
    whole batch: it is ``nats.max_ack_pending`` or the app's fetch batch if larger
    (the archiver pulls a DuckDB row group, 122,880 decisions, at a time)."""
    small = make_settings(tmp_path / "small", settings.nats.url, NATS_MAX_ACK_PENDING="100")

    async def main() -> None:
        bus = await open_bus(small)
        try:
            await _publish(bus, 0, 300)
            sub = await bus.pull(ConsumerSpec(DECISIONS, "fetch-big"), fetch_batch=250)
            info = await bus.js.consumer_info(DECISIONS, "fetch-big")
            assert info.config.max_ack_pending == 250
            assert await asyncio.wait_for(_fetch_acked(sub, 250, 5), 10) == list(range(250))
            default = await bus.pull(ConsumerSpec(DECISIONS, "fetch-small"), fetch_batch=50)
            assert (await bus.js.consumer_info(DECISIONS, "fetch-small")).config.max_ack_pending == 100
            await unsubscribe_quietly(default)
        finally:
            await bus.close()

    asyncio.run(main())


def test_max_bytes_bounds_a_pull_and_loses_nothing(settings: Settings) -> None:
    """Messages may carry a DecisionBatch of hundreds: a pull is bounded in bytes too."""

    async def main() -> None:
        bus = await open_bus(settings)
        try:
            async with bus.publisher() as pub:
                for i in range(20):
                    await pub.publish(SUBJECT, b"%04d" % i + b"x" * 996, f"bytes-{i}")
                await pub.flush()
            sub = await bus.pull(ConsumerSpec(DECISIONS, "fetch-bytes"))
            seen: list[int] = []
            sizes: list[int] = []
            while len(seen) < 20:
                msgs = await fetch(sub, 20, 5, max_bytes=5_000)
                sizes.append(len(msgs))
                for msg in msgs:
                    seen.append(int(msg.data[:4]))
                    await msg.ack()
            assert seen == list(range(20)) and max(sizes) <= 5
        finally:
            await bus.close()

    asyncio.run(main())
