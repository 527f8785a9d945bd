"""Collector entry point: pick a source, enrich, batch, publish, tick.

Sources: ``ebpf`` (root + BCC), ``trace:FILE`` (JSONL, DESIGN.md format) and
``synthetic`` (load generator); ``auto`` is ebpf when available.

Invariants:
- publish ids are exactly-once: (node, boot, partition, sequence) where boot
  is ``<kernel boot id>-<collector start, ns since boot>`` for live sources
  (a restarted collector never reuses a sequence) and a hash of the file for
  a trace (re-publishing a trace stores nothing twice);
- every ``collector.tick_interval`` a ClockTicked goes to every partition
  (live sources only: a trace carries its own time);
- workload identity comes from the container runtimes (collector/runtimes/);
  events of a container nobody named yet are held (collector/hold.py) and
  published named, or dropped and counted per cause: never image-less;
- when the registry names a container whose events were dropped, or renames a
  running one, the dedup entries of its cgroups are forgotten, so its
  behaviour is reported again under the name it has now;
- when a profile changes state (PROFILES: StateChanged, ProfileReset,
  VersionEvicted for image X) the dedup entries of X's containers are deleted
  (``collector.dedup_flush_on_profile_change``), so X's behaviour is reported
  again; other images keep theirs. Every BPF map operation runs on the
  collector's loop, between two ring-buffer drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from collector import abi, identity
from collector import flush as dedup_flush
from collector import workloads as wreg
from collector.enrich import Enricher
from collector.hold import Hold
from collector.publisher import BatchingPublisher
from collector.runtimes import NO_SOURCE, UNKNOWN_LAYOUT
from collector.runtimes.resolver import Resolver, live_containers
from collector.sources import Synthetic, SyntheticSpec, trace_source
from contracts.codec import encode_json
from contracts.decisions import Heartbeat
from contracts.events import ClockTicked, ContainerStarted, ContainerStopped, RawEvent
from contracts.subjects import HEARTBEAT_BUCKET, PROFILES, stream_spec
from services.runtime.bus import Bus, connect, ensure_buckets
from services.runtime.settings import Settings
from services.runtime.storage import room_before_compaction

log = logging.getLogger("vigil.collector")


def resolve_source(settings: Settings) -> str:
    source = settings.collector.source
    if source == "auto":
        from collector.ebpf import missing

        return "ebpf" if not missing() else "synthetic-unavailable"
    return source


def collector_available(settings: Settings) -> tuple[bool, str]:
    """Whether `vigil up` should start the collector, and if not, exactly what is missing."""
    if not settings.runtime_security_config.enabled:
        return False, "runtime security is switched off (runtime_security_config.enabled: false)"
    source = settings.collector.source
    if source not in ("auto", "ebpf"):
        return True, source
    from collector.ebpf import missing

    lacking = missing()
    if lacking:
        return False, "the eBPF collector needs: " + "; ".join(lacking)
    return True, "ebpf"


def boot_id(path: str = "/proc/sys/kernel/random/boot_id") -> str:
    try:
        return Path(path).read_text().strip().replace("-", "")[:16]
    except OSError:
        return socket.gethostname()


def live_boot() -> str:
    return f"{boot_id()}-{time.monotonic_ns()}"


def trace_boot(path: Path) -> str:
    return "trace-" + hashlib.sha1(path.read_bytes()).hexdigest()[:12]


class Collector:
    """One collector run; :meth:`stop` may be called from any thread."""

    def __init__(self, settings: Settings, source: str | None = None) -> None:
        self.settings = settings
        self.source = source or resolve_source(settings)
        self.registry = wreg.Registry()
        self.probe: Any = None
        self.enricher: Enricher | None = None
        self.decode_stats = abi.DecodeStats()
        self.records = 0
        self.batcher: BatchingPublisher | None = None
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._closing = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_dedup = threading.Event()
        self.flushed_version = 0  # registry version the dedup map was last flushed for
        self._flush_images: set[str] = set()  # images whose profile changed state since the last drain
        self.dedup_flushes = 0  # whole-map flushes (timer, request, fallback)
        self.dedup_image_flushes = 0  # targeted flushes: a profile state change, containers (re)named
        self.dedup_flushed_entries = 0  # entries deleted by targeted flushes
        self.lost_records = self.lost_syscalls = 0  # what the kernel side lost, as drained per cgroup
        ident = settings.collector.identity
        self.hold = Hold(max_age_ns=int(float(ident.hold) * 1e9), max_events=ident.hold_events)
        self.resolver: Resolver | None = None

    # --- control (thread-safe) ----------------------------------------------------

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def request_dedup_flush(self) -> None:
        self._flush_dedup.set()

    def counters(self) -> dict[str, int]:
        out = {
            "records": self.records,
            "decoded": self.decode_stats.decoded,
            "unknown_op": self.decode_stats.unknown_op,
            "short": self.decode_stats.short,
            "size_mismatch": self.decode_stats.size_mismatch,
        }
        if self.batcher is not None:
            out.update(events=self.batcher.events, batches=self.batcher.batches)
            out.update(self.batcher.storage_counters())
        if self.probe is not None:
            out.update({f"kernel_{k}": v for k, v in self.probe.counters().items()})
            out.update(
                lost_records=self.lost_records,
                lost_syscalls=self.lost_syscalls,
                dedup_flushes=self.dedup_flushes,
                dedup_image_flushes=self.dedup_image_flushes,
                dedup_flushed_entries=self.dedup_flushed_entries,
            )
        if self.enricher is not None:
            stats = self.enricher.stats
            out.update(host_dropped=stats.host_dropped, not_dns=stats.not_dns, unknown_layout=stats.unknown_layout)
            out.update(held=self.hold.count, released=self.hold.released)
            out.update({f"unresolved_{cause}": n for cause, n in sorted(self.hold.dropped.items())})
        return out

    def samples(self) -> dict[str, list[str]]:
        """A few container ids (cgroup paths for unknown_layout) per unresolved cause, for `vigil status`."""
        out = {f"unresolved_{cause}": list(ids) for cause, ids in self.hold.samples.items()}
        if self.enricher is not None and self.enricher.odd_layouts:
            out[UNKNOWN_LAYOUT] = list(self.enricher.odd_layouts.values())[-5:]
        return out

    # --- run -------------------------------------------------------------------------

    async def run(self) -> dict[str, int]:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._closing = asyncio.Event()
        cfg = self.settings.collector
        if self.source in ("ebpf", "synthetic-unavailable"):
            from collector.ebpf import missing

            lacking = missing()
            if lacking or self.source != "ebpf":  # said at start, not as a compiler error from BCC
                raise SystemExit(
                    "collector: the eBPF source is unavailable: "
                    + "; ".join(lacking)
                    + " (or set collector.source to synthetic or trace:FILE)"
                )
        bus = await connect(self.settings, name="vigil-collector")
        tasks: list[asyncio.Task[Any]] = []
        try:
            await bus.ensure_streams()
            await ensure_buckets(bus)
            kv = await wreg.bucket(bus.js)
            if cfg.workloads_file:
                changed = await wreg.seed_from_file(kv, cfg.workloads_file)
                log.info("workloads file %s: %d entries written", cfg.workloads_file, changed)
            await self.registry.start(kv, bus.nc)
            if self.source == "ebpf":
                self.resolver = Resolver(
                    self.settings, kv, self.registry, lambda: live_containers(identity.cgroup2_mount())
                )
                await self.resolver.start()
                log.info(
                    "workload identity from: %s", ", ".join(self.resolver.describe()) or "no container runtime found"
                )
            if self.source == "ebpf" and cfg.dedup and cfg.dedup_flush_on_profile_change:
                await bus.nc.subscribe(stream_spec(PROFILES).subjects[0], cb=self._on_profile)
                await bus.nc.flush()  # subscribed on the server before the probe is reported ready
            is_trace = self.source.startswith("trace:")
            boot = trace_boot(Path(self.source[6:])) if is_trace else live_boot()
            async with bus.publisher() as pub:
                self.batcher = BatchingPublisher(
                    pub,
                    self.settings.node_name,
                    boot,
                    self.settings.nats.partitions,
                    cfg.batch_size,
                    hold_bytes=self.settings.storage.collector_buffer_bytes,
                    room=lambda: room_before_compaction(bus.js, self.settings),
                )
                tasks.append(asyncio.create_task(self._flusher()))
                tasks.append(asyncio.create_task(self._heartbeats(bus)))
                if not is_trace:
                    tasks.append(asyncio.create_task(self._ticker()))
                await self._pump(self._chunks())
                # Let the timers finish what they are doing (a flush in flight
                # keeps its acks), then publish the rest and wait for its acks.
                self._closing.set()
                await asyncio.wait(tasks, timeout=10)
                await self.batcher.drain()
                await self._give_up_held()
        finally:
            # Timers stop on their own; cancel too, but never wait on a task that
            # swallowed its cancellation (nats-py's kv.put can): bounded wait.
            self._closing.set()
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5)
            if self.resolver is not None:
                await self.resolver.stop()
            await self.registry.stop()
            if self.probe is not None:
                self.probe.close()
            await bus.close()
        stats = self.counters()
        log.info("collector stopped: %s", stats)
        return stats

    async def _pump(self, chunks: AsyncIterator[list[RawEvent]]) -> None:
        assert self.batcher is not None and self._stop is not None
        stop = asyncio.create_task(self._stop.wait())
        paced = self.source.startswith("trace:")
        it = chunks.__aiter__()
        try:
            while True:
                nxt = asyncio.ensure_future(it.__anext__())
                done, _ = await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await nxt
                    return
                try:
                    chunk = nxt.result()
                except StopAsyncIteration:
                    return
                for event in chunk:
                    await self.batcher.add(event)
                while paced and self.batcher.held and not self._stop.is_set():
                    await asyncio.sleep(0.05)  # a trace waits for room (the flusher retries); live sources never do
        finally:
            stop.cancel()
            with contextlib.suppress(Exception):
                await it.aclose()  # type: ignore[attr-defined]

    def _chunks(self) -> AsyncIterator[list[RawEvent]]:
        cfg = self.settings.collector
        if self.source.startswith("trace:"):
            return self._counted(trace_source(Path(self.source[6:]), cfg.batch_size))
        if self.source == "synthetic":
            spec = SyntheticSpec(
                rate=cfg.synthetic_rate,
                containers=cfg.synthetic_containers,
                images=cfg.synthetic_images,
                mix=cfg.synthetic_mix,
                total=cfg.synthetic_events,
                node=self.settings.node_name,
            )
            return self._counted(Synthetic(spec).run(float(cfg.batch_interval)))
        if self.source == "ebpf":
            return self._ebpf()
        raise SystemExit(f"collector: unknown source {self.source!r}")

    async def _counted(self, chunks: AsyncIterator[list[RawEvent]]) -> AsyncIterator[list[RawEvent]]:
        self.ready.set()
        async for chunk in chunks:
            self.records += len(chunk)
            yield chunk

    # --- the kernel source -------------------------------------------------------------

    async def _ebpf(self) -> AsyncIterator[list[RawEvent]]:
        from collector.ebpf import Probe, ProbeOptions

        cfg = self.settings.collector
        types = self.settings.runtime_security_config.event_types
        opts = ProbeOptions(
            dedup=cfg.dedup,
            dedup_size=cfg.dedup_map_size,
            ring_bytes=cfg.ring_buffer_bytes,
            exec=types.exec,
            open=types.open,
            connect=types.connect and self.settings.runtime_security_config.network.enabled,
            dns=types.dns and self.settings.runtime_security_config.network.enabled,
            syscalls=types.syscalls,
            syscall_map_size=cfg.syscall_map_size,
        )
        self.probe = await asyncio.to_thread(Probe, opts)
        self.enricher = Enricher(
            node=self.settings.node_name,
            paths=identity.CgroupPaths(),
            workloads=self.registry,
            host_processes=cfg.host_processes,
            clock_offset_ns=time.time_ns() - time.monotonic_ns(),
        )
        log.info("eBPF collector attached (dedup %s, ring %d bytes)", opts.dedup, opts.ring_bytes)
        self.ready.set()
        seen_version = self.registry.version
        next_syscalls = next_flush = time.monotonic()
        while True:
            await asyncio.sleep(float(cfg.consume_interval))
            records = self._decode(self.probe.consume())
            now = time.monotonic()
            # Held events first: a container's earlier events go out before its later ones.
            out, given_up = self.hold.release(self._verdict, time.monotonic_ns(), self._timeout_cause)
            if self.resolver is not None:
                for cid in given_up:
                    self.resolver.forget(cid)
            fresh: list[RawEvent] = []
            # Records in kernel order (a container's mkdir is learned before
            # anything of it is attributed); syscall sets are drained right
            # before a container stops, so its last syscalls precede its
            # ContainerStopped, and on their timer.
            for rec in records:
                if isinstance(rec, abi.CgroupChange) and not rec.started:
                    fresh.extend(self._drain_syscalls())
                fresh.extend(self.enricher.handle(rec))
            if now >= next_syscalls:
                next_syscalls = now + float(cfg.syscalls_interval)
                fresh.extend(self._drain_syscalls())
            passed, unnamed = self.hold.admit(fresh, time.monotonic_ns())
            out.extend(passed)
            self._tell_resolver(fresh, unnamed)
            if self.registry.version != seen_version:
                seen_version = self.registry.version
                self._forget_renamed()
                self.flushed_version = seen_version
            flush = self._flush_dedup.is_set()
            if cfg.dedup_flush_interval and now >= next_flush:
                next_flush, flush = now + float(cfg.dedup_flush_interval), True
            if flush:
                self._flush_dedup.clear()
                self._flush(whole=True, why="requested or timer")
            elif self._flush_images:
                self._flush(whole=False, why="profile state changed")
            if out:
                yield out

    def _verdict(self, container_id: str) -> Any:
        if self.resolver is None:
            return self.registry.get(container_id)
        assert self.enricher is not None
        return self.resolver.verdict(container_id, self.enricher.runtime_of(container_id))

    def _timeout_cause(self, container_id: str) -> str:
        assert self.enricher is not None
        if self.resolver is None:
            return NO_SOURCE
        return self.resolver.give_up_cause(self.enricher.runtime_of(container_id))

    def _tell_resolver(self, events: list[RawEvent], unnamed: list[str]) -> None:
        """New unnamed containers are asked about; starts and stops keep the registry's
        ``stopped`` marks right."""
        if self.resolver is None or self.enricher is None:
            return
        for cid in unnamed:
            self.resolver.want(cid, self.enricher.runtime_of(cid))
        for e in events:
            if isinstance(e, ContainerStopped):
                asyncio.ensure_future(self.resolver.stopped(e.container.id))
            elif isinstance(e, ContainerStarted) and e.container.known:
                asyncio.ensure_future(self.resolver.started(e.container.id))

    def _forget_renamed(self) -> None:
        """The registry changed: dedup entries of cgroups whose behaviour went out under
        another identity, or was dropped for want of one, are forgotten so that
        behaviour is reported again under the identity it has now."""
        assert self.enricher is not None and self.probe is not None
        cgroups = self.enricher.renamed()
        dropped = self.hold.dropped_cgroups
        for cg, cid in list(dropped.items()):
            if self.registry.get(cid) is not None:
                cgroups.add(cg)
                del dropped[cg]
        if cgroups:
            self._flush(whole=False, why="workload registry named them", cgroups=cgroups)

    async def _on_profile(self, msg: Any) -> None:
        image = dedup_flush.image_to_flush(msg.data)
        if image is not None:
            self._flush_images.add(image)

    def _flush(self, whole: bool, why: str, cgroups: set[int] | None = None) -> None:
        """Whole map (``whole``), the entries of ``cgroups``, or else those of the
        images whose profile changed."""
        assert self.probe is not None and self.enricher is not None
        if whole:
            self._flush_images = set()
            self.probe.flush_dedup()
            self.dedup_flushes += 1
            log.info("dedup map flushed (%s)", why)
            return
        enricher = self.enricher
        if cgroups is not None:
            what = f"{len(cgroups)} cgroups"

            def select(keys: Any) -> Any:
                return [k for k in keys if int(k.cgroup_id) in cgroups]

        else:
            images, self._flush_images = self._flush_images, set()
            what = ", ".join(sorted(images))

            def image_of(cg: int) -> str | None:
                found = enricher.container(cg)
                return found.image_name if found is not None else None

            def select(keys: Any) -> Any:
                return dedup_flush.keys_to_flush(keys, lambda k: int(k.cgroup_id), image_of, images)

        deleted, cleared = self.probe.flush_dedup_where(select)
        if cleared:
            self.dedup_flushes += 1
            log.warning("dedup map flushed whole: targeted delete for %s failed", what)
            return
        self.dedup_image_flushes += 1
        self.dedup_flushed_entries += deleted
        log.info("dedup: %d entries of %s forgotten (%s)", deleted, what, why)

    def _drain_syscalls(self) -> list[RawEvent]:
        """Syscall sets since the last drain, and what the kernel side lost meanwhile, per container."""
        assert self.probe is not None and self.enricher is not None
        now_ns = time.time_ns()
        enricher = self.enricher
        out = [e for cg, pid, nrs in self.probe.drain_syscalls() for e in enricher.syscalls(cg, pid, nrs, now_ns)]
        for cg, records, syscalls in self.probe.drain_lost():
            self.lost_records += records
            self.lost_syscalls += syscalls
            out.extend(enricher.lost(cg, records, syscalls, now_ns))
        return out

    def _decode(self, raw: list[bytes]) -> list[abi.Record]:
        self.records += len(raw)
        stats = self.decode_stats
        return [rec for rec in (abi.decode(data, stats) for data in raw) if rec is not None]

    # --- timers ------------------------------------------------------------------------

    async def _ticker(self) -> None:
        assert self.batcher is not None
        interval = float(self.settings.collector.tick_interval)
        while interval > 0 and not self._closing.is_set():
            await self.batcher.add(ClockTicked(time=time.time_ns(), node=self.settings.node_name))
            await self._pause(interval)

    async def _give_up_held(self, patience: float = 5.0) -> None:
        """At stop, batches EVENTS refused get a last few seconds; then they are dropped, counted."""
        assert self.batcher is not None
        deadline = time.monotonic() + patience
        while self.batcher.held and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            await self.batcher.drain()
        if self.batcher.held:
            lost = self.batcher.drop_held("stopped_while_full")
            log.error("collector stopped, EVENTS full: %d held events dropped (%s)", lost, self.batcher.last_refusal)

    async def _flusher(self) -> None:
        assert self.batcher is not None
        interval = float(self.settings.collector.batch_interval)
        while not self._closing.is_set():
            await self._pause(interval)
            await self.batcher.drain()

    async def _heartbeats(self, bus: Bus) -> None:
        try:
            kv = await bus.js.key_value(HEARTBEAT_BUCKET)
        except Exception:  # noqa: BLE001 - heartbeats are best effort
            return
        started = time.time()
        key = f"collector.{self.settings.node_name}".replace(":", "_")
        while not self._closing.is_set():
            beat = Heartbeat(
                service="collector",
                instance=self.settings.node_name,
                host=socket.gethostname(),
                pid=os.getpid(),
                started=started,
                updated=time.time(),
                counters=self.counters(),
                samples=self.samples(),
                sources=self.resolver.describe() if self.resolver is not None else [],
            )
            with contextlib.suppress(Exception):
                await kv.put(key, encode_json(beat))
            await self._pause(float(self.settings.telemetry.heartbeat_interval))

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)


async def run_collector(settings: Settings, source: str | None = None) -> dict[str, int]:
    """Run until SIGINT/SIGTERM (live sources) or the end of the trace."""
    collector = Collector(settings, source)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, collector.stop)
    return await collector.run()
