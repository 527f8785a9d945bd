"""Kernel tests: one loaded collector (BPF compile ~1-2 s) shared by every test
in this directory, publishing to a real nats-server; real processes run in
test cgroups named like containerd scopes under the cgroup v2 mount.

Skipped, with the reason, when not root or when BCC / headers / tracefs are
missing (CI runs as root after `make install`, so there they run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from contracts.codec import decode_batch
from contracts.events import RawEvent
from contracts.subjects import EVENTS
from contracts.workloads import Workload
from services.runtime import embedded
from services.runtime.settings import Settings
from tests.conftest import needs_root_reason
from tests.support import make_settings, open_bus, read_stream


def _skip_reason() -> str | None:
    if reason := needs_root_reason():
        return reason
    from collector.ebpf import missing
    from collector.identity import cgroup2_mount

    lacking = missing()
    if lacking:
        return "eBPF collector unavailable: " + "; ".join(lacking)
    if cgroup2_mount() is None:
        return "no cgroup v2 mount"
    return None


SKIP = _skip_reason()
# Short: containerd's socket path must fit in a unix socket address (108 bytes).
RUNTIMES_DIR = Path(tempfile.gettempdir()) / f"vigil-rt-{os.getpid()}"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if SKIP:
        for item in items:
            if "tests/kernel" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=SKIP))


@dataclass
class KernelEnv:
    settings: Settings
    collector: Any

    def events(self, predicate: Callable[[RawEvent], bool] = lambda e: True) -> list[RawEvent]:
        """Every event on the EVENTS stream (read back from the bus) that matches."""

        async def read() -> list[RawEvent]:
            bus = await open_bus(self.settings)
            try:
                msgs = await read_stream(bus, EVENTS)
            finally:
                await bus.close()
            return [e for m in msgs for e in decode_batch(m.data).events if predicate(e)]

        return asyncio.run(read())

    def wait_events(
        self, predicate: Callable[[list[RawEvent]], bool], select: Callable[[RawEvent], bool], timeout: float = 60
    ) -> list[RawEvent]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(select)
            if predicate(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"events not seen within {timeout}s; got {len(found)}: {found[:20]}")
            time.sleep(0.2)

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        """The collector's event loop blocked for the block: it decodes nothing
        meanwhile (the kernel keeps filling the ring buffer), as when it is busy."""
        entered, release = threading.Event(), threading.Event()

        def hold() -> None:
            entered.set()
            release.wait(30)

        self.collector._loop.call_soon_threadsafe(hold)
        assert entered.wait(10), "the collector's loop did not stop"
        try:
            yield
        finally:
            release.set()

    def register(self, w: Workload) -> None:
        from collector.workloads import bucket, put

        async def go() -> None:
            bus = await open_bus(self.settings)
            try:
                await put(await bucket(bus.js), w)
            finally:
                await bus.close()

        asyncio.run(go())
        deadline = time.monotonic() + 10
        while self.collector.registry.get(w.container_id) != w or (
            self.collector.flushed_version < self.collector.registry.version
        ):
            assert time.monotonic() < deadline, "collector did not learn the workload"
            time.sleep(0.02)


@contextlib.contextmanager
def live_collector(base: Path, **env: str) -> Iterator[KernelEnv]:
    """The eBPF collector in a thread, publishing to its own nats-server (JetStream under
    ``base``), with these ``VIGIL_*`` overrides; stopped at the end of the block."""
    from collector.main import Collector

    server = embedded.start(base / "nats-data", port=-1)
    settings = make_settings(base / "vigil", server.url, COLLECTOR_SOURCE="ebpf", **env)
    collector = Collector(settings)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(collector.run())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            failure.append(exc)
            collector.ready.set()

    thread = threading.Thread(target=run, name="collector", daemon=True)
    thread.start()
    try:
        assert collector.ready.wait(60), "collector did not attach"
        if failure:
            raise failure[0]
        yield KernelEnv(settings, collector)
    finally:
        collector.stop()
        thread.join(30)
        server.stop()


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelEnv]:
    if SKIP:
        pytest.skip(SKIP)
    try:
        with live_collector(
            tmp_path_factory.mktemp("kernel"),
            COLLECTOR_HOST_PROCESSES="ignore",
            COLLECTOR_SYSCALLS_INTERVAL="0.2",
            COLLECTOR_BATCH_INTERVAL="0.02",
            # The tests' own dockerd and containerd (tests/kernel/runtimes.py), started
            # after the collector: found by the resolver's discovery, as a runtime
            # started after Vigil is on a node. podman is the host's own.
            COLLECTOR_RUNTIMES_DOCKER_SOCKET=str(RUNTIMES_DIR / "docker" / "docker.sock"),
            COLLECTOR_RUNTIMES_CONTAINERD_STATE=str(RUNTIMES_DIR / "containerd-state"),
            COLLECTOR_IDENTITY_DISCOVER_INTERVAL="0.5",
            COLLECTOR_IDENTITY_HOLD="5s",
            COLLECTOR_IDENTITY_STOPPED_GRACE="3s",
        ) as env:
            yield env
    finally:
        shutil.rmtree(RUNTIMES_DIR, ignore_errors=True)


@dataclass
class CgroupContainer:
    id: str
    cgroup: Path

    def command(self, *argv: str) -> list[str]:
        """argv run inside this container's cgroup (the shell moves itself in, then execs)."""
        procs = self.cgroup / "cgroup.procs"
        return ["/bin/sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *argv]

    def run(self, *argv: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.command(*argv), capture_output=True, timeout=60, **kw)


@contextlib.contextmanager
def container_cgroup(
    env: KernelEnv | None = None,
    image: str = "",
    tag: str = "1.0",
    prefix: str = "cri-containerd-",
    stall: bool = False,
) -> Iterator[CgroupContainer]:
    """A cgroup named like a runtime's container scope; with ``env`` and ``image``
    the workload is registered first, as a CRI watcher would before the start.
    With ``stall`` the collector decodes nothing from before the mkdir until
    after the rmdir: it sees the whole container only once its cgroup is gone."""
    from collector.identity import cgroup2_mount

    mount = cgroup2_mount()
    assert mount is not None
    cid = secrets.token_hex(32)
    if env is not None and image:
        env.register(
            Workload(
                container_id=cid,
                image_name=image,
                image_tag=tag,
                pod="app-0",
                namespace="test",
                name="app",
                source="test",
            )
        )
    path = mount / "vigil-test.slice" / f"{prefix}{cid}.scope"
    with env.stalled() if stall and env is not None else contextlib.nullcontext():
        path.mkdir(parents=True)
        try:
            yield CgroupContainer(cid, path)
        finally:
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


@pytest.fixture
def container() -> Iterator[CgroupContainer]:
    with container_cgroup() as c:
        yield c


def of(cid: str, *types: type) -> Callable[[RawEvent], bool]:
    """Events of this container (of these types, when given)."""

    def mine(e: RawEvent) -> bool:
        c = getattr(e, "container", None)
        return c is not None and c.id == cid and (not types or isinstance(e, types))

    return mine


def workload(c: CgroupContainer, image: str = "vigil-test/app", tag: str = "1.0") -> Workload:
    return Workload(
        container_id=c.id, image_name=image, image_tag=tag, pod="app-0", namespace="test", name="app", source="test"
    )


def which(name: str) -> str:
    found = shutil.which(name)
    assert found, name
    return found
