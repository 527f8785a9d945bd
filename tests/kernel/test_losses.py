"""Nothing the kernel side loses goes unsaid: a collector with a tiny ring buffer
and a tiny syscall map, flooded, reports per container what it lost
(``EventsLost`` on EVENTS), and a behaviour whose record was dropped is reported
on its next occurrence (its dedup key was forgotten, not kept to suppress it
forever)."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.events import EventsLost, FileOpened
from tests.kernel.conftest import SKIP, KernelEnv, container_cgroup, live_collector, of
from tests.support import wait_for

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
    with live_collector(
        tmp_path_factory.mktemp("tiny"),
        COLLECTOR_RING_BUFFER_BYTES=str(8 * 4096),
        COLLECTOR_SYSCALL_MAP_SIZE="2",
        COLLECTOR_SYSCALLS_INTERVAL="3s",
        COLLECTOR_RUNTIMES_DOCKER_ENABLED="false",
        COLLECTOR_RUNTIMES_PODMAN_ENABLED="false",
        COLLECTOR_RUNTIMES_CONTAINERD_ENABLED="false",
    ) as env:
        yield env


def test_dropped_records_and_unrecorded_syscalls_are_reported_per_container(tiny: KernelEnv, tmp_path: Path) -> None:
    col = tiny.collector
    missing = tmp_path / f"nothing-{secrets.token_hex(4)}"  # every open fails: a record each, no file needed
    wanted = {f"{missing}/{i}" for i in range(PATHS)}

    def opened() -> set[str]:
        return {e.file.path for e in tiny.events(of(c.id, FileOpened))}  # type: ignore[attr-defined]

    with container_cgroup(tiny, "vigil-test/lossy") as c:
        flood = c.run(sys.executable, "-c", FLOOD, str(missing), "flood")
        assert flood.returncode == 0, flood.stderr
        c.run("/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8; do /bin/true; done")  # 8 processes, a map of 2
        asyncio.run(wait_for(lambda: col.lost_syscalls > 0 and col.lost_records > 0, timeout=20))
        lost = tiny.wait_events(lambda es: bool(es), of(c.id, EventsLost))
        assert sum(e.records for e in lost) > 0 and sum(e.syscalls for e in lost) > 0  # type: ignore[attr-defined]
        assert {e.container.image_name for e in lost} == {"vigil-test/lossy"}  # type: ignore[attr-defined]
        assert len(opened() & wanted) < PATHS  # the ring really overflowed
        # Again, paced: what was dropped is reported now; what was reported stays suppressed.
        paced = c.run(sys.executable, "-c", FLOOD, str(missing), "paced")
        assert paced.returncode == 0, paced.stderr
        deadline = time.monotonic() + 30
        while not wanted <= opened():
            assert time.monotonic() < deadline, "a dropped behaviour was never reported again"
            time.sleep(0.5)
    counters = col.probe.counters()
    assert counters["dropped"] > 0 and counters["syscalls_lost"] > 0
