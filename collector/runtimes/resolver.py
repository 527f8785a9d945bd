"""The resolver: runtime sources → the workload registry (KV ``vigil_workloads``).

Invariants:
- sources are found, not configured: each enabled runtime whose socket or
  state is present gets one (checked again every ``discover_interval``, so a
  runtime started after the collector is picked up); which ones run is logged
  and shown in the collector's heartbeat;
- a write happens only when the entry would change (the registry is the
  collector's identity cache: every change costs it a recomputation);
- a container that stops (the runtime says so, or the kernel saw its cgroup
  removed) is kept, marked ``stopped``, for ``stopped_grace`` so its late
  events keep their identity, then deleted; entries of this node whose
  container has no cgroup any more (stopped while the collector was down) are
  marked on every sweep. Entries from other nodes and from ``file``/``cli``
  are never touched;
- :meth:`Resolver.verdict` is what the hold asks: a workload, a final cause,
  or "not yet".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec

from collector import identity
from collector.runtimes import NO_SOURCE, NOT_FOUND, Seen, Skipped, Source
from contracts import workloads as wl
from contracts.workloads import Workload
from services.runtime.settings import Settings

log = logging.getLogger("vigil.collector.runtimes")

RUNTIMES = ("docker", "podman", "containerd", "cri-o")


class Registry(Protocol):
    """What the resolver needs of the collector's registry (collector.workloads.Registry)."""

    def get(self, container_id: str) -> Workload | None: ...

    def items(self) -> list[Workload]: ...


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def discover(settings: Settings, present: set[str]) -> list[Source]:
    """Sources for the enabled runtimes that are present and not yet in ``present`` (their ``where``)."""
    from collector.runtimes.containerd import ContainerdSource
    from collector.runtimes.engine import EngineSource
    from collector.runtimes.storage import StorageSource

    cfg = settings.collector.runtimes
    node, poll = settings.node_name, float(settings.collector.identity.poll_interval)
    out: list[Source] = []
    if cfg.docker.enabled and _is_socket(cfg.docker.socket):
        out.append(EngineSource("docker", cfg.docker.socket, node))
    storage_runtimes = set()
    if cfg.podman.enabled:
        if _is_socket(cfg.podman.socket):
            out.append(EngineSource("podman", cfg.podman.socket, node))
        elif any(Path(cfg.podman.graphroot).glob("*-containers/containers.json")):
            storage_runtimes.add("podman")
    if cfg.crio.enabled and _is_socket(cfg.crio.socket):
        storage_runtimes.add("cri-o")
    if storage_runtimes:
        graphroot = cfg.podman.graphroot if "podman" in storage_runtimes else cfg.crio.graphroot
        runroot = cfg.podman.runroot if "podman" in storage_runtimes else cfg.crio.runroot
        events = cfg.podman.events_log if "podman" in storage_runtimes else ""
        out.append(StorageSource(storage_runtimes, graphroot, runroot, node, events, poll))
    if cfg.containerd.enabled and any(
        (Path(cfg.containerd.state) / d).is_dir()
        for d in ("io.containerd.runtime.v2.task", "io.containerd.runtime.v1.linux")
    ):
        out.append(ContainerdSource(cfg.containerd.state, node, poll))
    return [s for s in out if f"{s.runtime}@{s.where}" not in present]


class Resolver:
    def __init__(
        self,
        settings: Settings,
        kv: Any,
        registry: Registry,
        live: Callable[[], set[str]],
        clock: Callable[[], int] = time.time_ns,
        find: Callable[[Settings, set[str]], list[Source]] = discover,
    ) -> None:
        self.settings = settings
        self.kv = kv
        self.registry = registry
        self.live = live  # container ids that have a cgroup now
        self.clock = clock
        self.find = find
        cfg = settings.collector.identity
        self.grace_ns = int(float(cfg.stopped_grace) * 1e9)
        self.poll = float(cfg.poll_interval)
        self.sources: dict[str, Source] = {}
        self.skipped: dict[str, Skipped] = {}
        self._wanted: dict[str, str] = {}  # container id → runtime named by its cgroup layout
        self._tasks: list[asyncio.Task[None]] = []
        self.writes = 0
        self.deletes = 0

    # --- what sources report (the Sink) --------------------------------------------------

    async def seen(self, found: Seen) -> None:
        if isinstance(found, Skipped):
            self.skipped[found.container_id] = found
            self._wanted.pop(found.container_id, None)
            return
        self._wanted.pop(found.container_id, None)
        await self._put(found)

    async def gone(self, container_id: str) -> None:
        self.skipped.pop(container_id, None)
        await self.stopped(container_id)

    # --- what the collector reports -----------------------------------------------------

    async def stopped(self, container_id: str) -> None:
        """The container stopped (its cgroup was removed): keep it for the grace period."""
        w = self.registry.get(container_id)
        if w is not None and self._ours(w) and not w.stopped:
            await self._put(msgspec.structs.replace(w, stopped=self.clock()))

    async def started(self, container_id: str) -> None:
        w = self.registry.get(container_id)
        if w is not None and self._ours(w) and w.stopped:
            await self._put(msgspec.structs.replace(w, stopped=0))

    def want(self, container_id: str, runtime: str) -> None:
        """A cgroup of this container was seen and nobody has named it yet: ask now."""
        if container_id not in self._wanted and container_id not in self.skipped:
            self._wanted[container_id] = runtime
            self._spawn(self._ask(container_id, runtime))

    def forget(self, container_id: str) -> None:
        """The hold gave up on this container: stop asking."""
        self._wanted.pop(container_id, None)

    def verdict(self, container_id: str, runtime: str) -> Workload | str | None:
        """For the hold: the workload, a final cause (str), or None (keep waiting)."""
        w = self.registry.get(container_id)
        if w is not None:
            return w
        if (skipped := self.skipped.get(container_id)) is not None:
            return skipped.cause
        return None  # with no source for its runtime, another writer (vigil workloads add) may still name it

    def give_up_cause(self, runtime: str) -> str:
        return NOT_FOUND if any(s.serves(runtime) for s in self.sources.values()) else NO_SOURCE

    # --- running ------------------------------------------------------------------------

    async def start(self) -> None:
        self._discover()
        self._spawn(self._loop())

    def describe(self) -> list[str]:
        return sorted(f"{s.runtime} ({s.where})" for s in self.sources.values())

    def _discover(self) -> None:
        for source in self.find(self.settings, set(self.sources)):
            self.sources[f"{source.runtime}@{source.where}"] = source
            log.info("runtime source: %s (%s)", source.runtime, source.where)
            self._spawn(source.run(self))

    async def _loop(self) -> None:
        discover_every = float(self.settings.collector.identity.discover_interval)
        next_discover = next_sweep = time.monotonic()
        while True:
            await asyncio.sleep(self.poll)
            now = time.monotonic()
            for cid, runtime in list(self._wanted.items()):
                await self._ask(cid, runtime)
            if discover_every and now >= next_discover:
                next_discover = now + discover_every
                self._discover()
            if now >= next_sweep:
                next_sweep = now + max(1.0, float(self.settings.collector.identity.stopped_grace) / 10)
                await self.sweep()

    async def _ask(self, container_id: str, runtime: str) -> None:
        for source in list(self.sources.values()):
            if container_id not in self._wanted:
                return  # answered meanwhile
            if not source.serves(runtime):
                continue
            try:
                found = await source.lookup(container_id)
            except Exception as exc:  # noqa: BLE001 - one source failing never stops the others
                log.warning("%s: lookup %s: %s", source.runtime, container_id[:12], exc)
                continue
            if found is not None:
                await self.seen(found)
                return

    async def sweep(self) -> None:
        """Mark entries of stopped containers, delete those past the grace period."""
        now = self.clock()
        live = self.live()
        for w in self.registry.items():
            if not self._ours(w):
                continue
            if not w.stopped and w.container_id not in live:
                await self._put(msgspec.structs.replace(w, stopped=now))
            elif w.stopped and now - w.stopped >= self.grace_ns:
                with contextlib.suppress(Exception):
                    await self.kv.delete(wl.key(w.container_id))
                    self.deletes += 1
                self.skipped.pop(w.container_id, None)

    def _ours(self, w: Workload) -> bool:
        return w.source in RUNTIMES and w.node == self.settings.node_name

    async def _put(self, w: Workload) -> None:
        if self.registry.get(w.container_id) == w:
            return
        try:
            await self.kv.put(wl.key(w.container_id), wl.encode(w))
            self.writes += 1
        except Exception as exc:  # noqa: BLE001 - the bus is down: the next report or sweep writes it
            log.warning("workload registry: cannot write %s: %s", w.container_id[:12], exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("runtime resolver task failed: %r", task.exception())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        for source in self.sources.values():
            with contextlib.suppress(Exception):
                await source.close()


def live_containers(mount: Path | None) -> set[str]:
    """Container ids that have a cgroup on the v2 hierarchy now (a walk of its directories)."""
    if mount is None:
        return set()
    out = set()
    for dirpath, _dirs, _files in os.walk(mount):
        found = identity.match("/" + os.path.relpath(dirpath, mount))
        if found is not None:
            out.add(found.container_id)
    return out
