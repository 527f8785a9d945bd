"""Nothing the kernel side loses goes unsaid: a collector with a tiny ring buffer
and a tiny syscall map, flooded, reports per container what it lost
(``EventsLost`` on EVENTS), and a behaviour whose record was dropped is reported
on its next occurrence (its dedup key was forgotten, not kept to suppress it
forever)."""

from __future__ import annotations

import asyncio
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.codec import decode_batch
from contracts.events import EventsLost, FileOpened, RawEvent
from contracts.subjects import EVENTS
from contracts.workloads import Workload
from services.runtime import embedded
from tests.kernel.conftest import SKIP, container_cgroup
from tests.support import make_settings, open_bus, read_stream, wait_for

pytestmark = pytest.mark.kernel

PATHS = 3000
FLOOD = f"""
import sys, time
base = sys.argv[1]
paced = sys.argv[2] == "paced"
for i in range({PATHS}):
    try:
        open(f"{{base}}/{{i}}")
    except OSError:
        pass
    if paced and i % 5 == 0:
        time.sleep(0.004)  # ~1,250 opens/s: what a 32 KiB ring drained every 10 ms holds
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if SKIP:
        pytest.skip(SKIP)
    from collector.main import Collector

    tmp = tmp_path_factory.mktemp("tiny")
    server = embedded.start(tmp / "nats", port=-1)
    settings = make_settings(
        tmp / "vigil",
        server.url,
        COLLECTOR_SOURCE="ebpf",
        COLLECTOR_RING_BUFFER_BYTES=str(8 * 4096),
        COLLECTOR_SYSCALL_MAP_SIZE="2",
        COLLECTOR_SYSCALLS_INTERVAL="3s",
        COLLECTOR_RUNTIMES_DOCKER_ENABLED="false",
        COLLECTOR_RUNTIMES_PODMAN_ENABLED="false",
        COLLECTOR_RUNTIMES_CONTAINERD_ENABLED="false",
    )
    col = Collector(settings)
    thread = threading.Thread(target=lambda: asyncio.run(col.run()), daemon=True)
    thread.start()
    assert col.ready.wait(60), "collector did not attach"
    try:
        yield col
    finally:
        col.stop()
        thread.join(30)
        server.stop()


def events_of(col: Any, cid: str) -> list[RawEvent]:
    async def read() -> list[RawEvent]:
        bus = await open_bus(col.settings)
        try:
            msgs = await read_stream(bus, EVENTS)
        finally:
            await bus.close()
        return [
            e
            for m in msgs
            for e in decode_batch(m.data).events
            if getattr(e, "container", None) is not None and e.container.id == cid
        ]  # type: ignore[attr-defined]  # noqa: E501

    return asyncio.run(read())


def register(col: Any, cid: str) -> None:
    from collector.workloads import bucket, put

    async def go() -> None:
        bus = await open_bus(col.settings)
        try:
            await put(await bucket(bus.js), Workload(container_id=cid, image_name="vigil-test/lossy", source="test"))
        finally:
            await bus.close()
        await wait_for(lambda: col.registry.get(cid) is not None)

    asyncio.run(go())


def test_dropped_records_and_unrecorded_syscalls_are_reported_per_container(tiny: Any, tmp_path: Path) -> None:
    missing = tmp_path / f"nothing-{secrets.token_hex(4)}"  # every open fails: a record each, no file needed
    with container_cgroup() as c:
        register(tiny, c.id)
        flood = c.run(sys.executable, "-c", FLOOD, str(missing), "flood")
        assert flood.returncode == 0, flood.stderr
        c.run("/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8; do /bin/true; done")  # 8 processes, a map of 2
        asyncio.run(wait_for(lambda: tiny.lost_syscalls > 0 and tiny.lost_records > 0, timeout=20))
        lost = [e for e in events_of(tiny, c.id) if isinstance(e, EventsLost)]
        assert sum(e.records for e in lost) > 0 and sum(e.syscalls for e in lost) > 0
        assert {e.container.image_name for e in lost} == {"vigil-test/lossy"}
        first = {e.file.path for e in events_of(tiny, c.id) if isinstance(e, FileOpened)}
        assert len(first & {f"{missing}/{i}" for i in range(PATHS)}) < PATHS  # the ring really overflowed
        # Again, paced: what was dropped is reported now; what was reported stays suppressed.
        paced = c.run(sys.executable, "-c", FLOOD, str(missing), "paced")
        assert paced.returncode == 0, paced.stderr

        wanted = {f"{missing}/{i}" for i in range(PATHS)}
        deadline = time.monotonic() + 30
        while not wanted <= {e.file.path for e in events_of(tiny, c.id) if isinstance(e, FileOpened)}:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "a dropped behaviour was never reported again"
            time.sleep(0.5)
    counters = tiny.probe.counters()
    assert counters["dropped"] > 0 and counters["syscalls_lost"] > 0
