"""The resolver (collector/runtimes/resolver.py) writing the workload registry on a
real nats-server, with in-memory sources standing in for the runtimes (the real
runtimes are in tests/kernel/test_runtime_identity.py); and the collector's
registry following the bucket across a nats-server restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from collector.runtimes import NO_IMAGE, NO_SOURCE, NOT_FOUND, Seen, Sink, Skipped
from collector.runtimes.resolver import Resolver
from collector.workloads import Registry, bucket, put
from contracts.workloads import Workload
from services.runtime import embedded
from services.runtime.settings import Settings
from tests.support import make_settings, open_bus, wait_for

S = 1_000_000_000
A, B, C = "a" * 64, "b" * 64, "c" * 64


class FakeSource:
    """A runtime that knows ``known`` and reports ``events`` once running."""

    def __init__(self, runtime: str, known: dict[str, Seen]) -> None:
        self.runtime = runtime
        self.where = f"fake:{runtime}"
        self.known = known
        self.lookups: list[str] = []
        self.sink: Sink | None = None

    def serves(self, runtime: str) -> bool:
        return runtime in (self.runtime, "any")

    async def run(self, sink: Sink) -> None:
        self.sink = sink
        for found in list(self.known.values()):
            await sink.seen(found)
        await asyncio.Event().wait()

    async def lookup(self, container_id: str) -> Seen | None:
        self.lookups.append(container_id)
        return self.known.get(container_id)

    async def close(self) -> None:
        return None


def work(cid: str, image: str = "nginx", node: str = "n1", source: str = "docker") -> Workload:
    return Workload(container_id=cid, image_name=image, image_tag="1.25", source=source, node=node)


@pytest.fixture
def s(settings: Settings) -> Settings:
    return make_settings(
        Path(settings.data_dir),
        settings.nats.url,
        COLLECTOR_NODE="n1",
        COLLECTOR_IDENTITY_STOPPED_GRACE="60s",
        COLLECTOR_IDENTITY_POLL_INTERVAL="0.05",
    )


@contextlib.asynccontextmanager
async def registry(s: Settings) -> AsyncIterator[tuple[Registry, Any]]:
    bus = await open_bus(s)
    kv = await bucket(bus.js)
    reg = Registry()
    await reg.start(kv)
    try:
        yield reg, kv
    finally:
        await reg.stop()
        await bus.close()


def test_sources_fill_the_registry_and_stopped_entries_leave_after_the_grace(s: Settings) -> None:
    asyncio.run(_fill_and_grace(s))


async def _fill_and_grace(s: Settings) -> None:
    async with registry(s) as (reg, kv):
        now = [100 * S]
        live = {A, B}
        docker = FakeSource("docker", {A: work(A), B: work(B, "redis")})
        resolver = Resolver(s, kv, reg, lambda: set(live), clock=lambda: now[0], find=lambda _s, _p: [docker])
        await resolver.start()
        try:
            await wait_for(lambda: reg.get(A) == work(A) and reg.get(B) == work(B, "redis"))
            writes = resolver.writes
            await docker.sink.seen(work(A))  # type: ignore[union-attr]  # the same again: no write
            assert resolver.writes == writes
            # Entries another node or an operator wrote are never touched.
            await put(kv, work(C, node="n2"))
            await put(kv, Workload(container_id="d" * 64, image_name="by-hand", source="cli"))
            await wait_for(lambda: reg.get(C) is not None and reg.get("d" * 64) is not None)
            # B stops (the runtime says so): marked, kept for the grace, then deleted.
            await docker.sink.gone(B)  # type: ignore[union-attr]
            await wait_for(lambda: (w := reg.get(B)) is not None and w.stopped == now[0])
            # A's cgroup is gone without a word from the runtime (stopped while we were down): the sweep marks it.
            live.discard(A)
            await resolver.sweep()
            await wait_for(lambda: (w := reg.get(A)) is not None and w.stopped == now[0])
            now[0] += 59 * S
            await resolver.sweep()
            assert reg.get(A) is not None and reg.get(B) is not None
            now[0] += 1 * S
            await resolver.sweep()
            await wait_for(lambda: reg.get(A) is None and reg.get(B) is None)
            assert reg.get(C) is not None and reg.get("d" * 64) is not None
        finally:
            await resolver.stop()


def test_a_restarted_container_is_unmarked(s: Settings) -> None:
    asyncio.run(_restarted(s))


async def _restarted(s: Settings) -> None:
    async with registry(s) as (reg, kv):
        resolver = Resolver(s, kv, reg, lambda: {A}, clock=lambda: 5 * S, find=lambda _s, _p: [])
        await resolver.start()
        try:
            await put(kv, Workload(container_id=A, image_name="nginx", source="podman", node="n1", stopped=3 * S))
            await wait_for(lambda: reg.get(A) is not None)
            await resolver.started(A)
            await wait_for(lambda: (w := reg.get(A)) is not None and w.stopped == 0)
        finally:
            await resolver.stop()


def test_verdicts_for_the_hold(s: Settings) -> None:
    asyncio.run(_verdicts(s))


async def _verdicts(s: Settings) -> None:
    async with registry(s) as (reg, kv):
        containerd = FakeSource("containerd", {})
        resolver = Resolver(s, kv, reg, set, find=lambda _s, _p: [containerd])
        await resolver.start()
        try:
            await wait_for(lambda: containerd.sink is not None)
            # asked at once, then again while wanted; answered by a later lookup
            resolver.want(A, "containerd")
            await wait_for(lambda: containerd.lookups.count(A) >= 2)
            assert resolver.verdict(A, "containerd") is None
            containerd.known[A] = work(A, source="containerd")
            await wait_for(lambda: isinstance(resolver.verdict(A, "containerd"), Workload))
            # a sandbox or an image-less container is a final answer, with its cause
            containerd.known[B] = Skipped(B, "containerd", NO_IMAGE)
            resolver.want(B, "containerd")
            await wait_for(lambda: resolver.verdict(B, "containerd") == NO_IMAGE)
            # no source for podman here; one for containerd that did not answer
            assert resolver.give_up_cause("podman") == NO_SOURCE
            assert resolver.give_up_cause("containerd") == NOT_FOUND
            assert resolver.give_up_cause("any") == NOT_FOUND
            resolver.forget(C)
        finally:
            await resolver.stop()


def test_registry_follows_the_bucket_across_a_nats_server_restart(tmp_path: Path) -> None:
    asyncio.run(_across_restart(tmp_path))


async def _across_restart(tmp_path: Path) -> None:
    server = embedded.start(tmp_path / "nats", port=-1)
    port = int(server.url.rsplit(":", 1)[1])
    s = make_settings(tmp_path / "vigil", server.url)
    bus = await open_bus(s)
    reg = Registry()
    try:
        await reg.start(await bucket(bus.js), bus.nc)
        await put(await bucket(bus.js), work(A))
        await wait_for(lambda: reg.get(A) is not None)
        server.stop()
        server = embedded.start(tmp_path / "nats", port=port)
        writer = await open_bus(s)
        try:
            await put(await bucket(writer.js), work(B, "redis"))
        finally:
            await writer.close()
        await wait_for(lambda: reg.get(B) is not None, timeout=5)  # without the restart: ~20 s
        assert reg.get(A) == work(A) and reg.restarts == 1
    finally:
        await reg.stop()
        await bus.close()
        server.stop()
