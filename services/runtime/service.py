"""The loop every service runs: fetch → handle → publish outputs → commit → ack.
FastStream's batch pull subscriber fetches (services/runtime/on_faststream.py);
the guarantees below are this module's.

Exactly-once effect over at-least-once delivery:

1. Every output gets a deterministic id, ``<service>:<input id>:<index>``
   (the input id is the input's own ``Nats-Msg-Id``), published with
   ``Nats-Msg-Id`` so JetStream drops a republished duplicate.
2. Inputs are acked only after all their outputs are stored and the app's
   ``commit`` (its sink, its snapshot) succeeded. A failing commit is retried
   with exponential backoff and jitter; nothing is acked meanwhile.
3. Stateful apps (``stateful = True``) own their position: the last stream
   sequence applied per stream, in ``app.positions``, restored with their
   state in ``start``. The runner then (re)creates the app's durable consumer
   to deliver from position + 1, in order, so state never misses an input
   that a dead instance had in flight; a redelivered sequence at or below the
   position is acked without being applied again, so state never sees an
   input twice. Stateless apps rely on deterministic output ids alone.
4. An input the app cannot use (:class:`Invalid`, or any exception from
   ``handle``) goes to ``vigil.dlq.<service>`` with the reason and is acked;
   the loop goes on.
5. Partitioned apps (``partitioned = True``, the profile-learner) keep state
   per input partition and have per-partition consumers. The runner takes a
   fair share of the partitions with :class:`~services.runtime.partitions.Leases`
   and starts a partition's consumers only after ``app.assign(p)`` restored
   its state; before a partition is given up its consumers are stopped (the
   batch in hand finished) and only then ``app.revoke(p)`` runs. So several
   instances split the input, and no partition is processed by two at once.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import random
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from nats.aio.msg import Msg

from contracts.codec import encode_json
from contracts.decisions import DeadLetter, Heartbeat
from contracts.headers import MSG_ID_HEADER
from contracts.subjects import HEARTBEAT_BUCKET, ConsumerSpec, dlq_subject
from services.runtime import telemetry
from services.runtime.bus import Bus, Publisher, connect, ensure_buckets, retry_transient
from services.runtime.errors import VigilError
from services.runtime.partitions import Leases
from services.runtime.settings import Settings

if TYPE_CHECKING:
    from faststream.nats import NatsBroker

log = logging.getLogger("vigil.service")


# The consumer whose batch the runner is handling and committing (set before ``handle``
# and ``commit``, and around ``idle``): a partitioned app's ``commit`` learns from it
# which partition's outputs were just flushed.
current_consumer: ContextVar[ConsumerSpec | None] = ContextVar("vigil_current_consumer", default=None)


class Invalid(VigilError):
    """The input does not match its contract; ``reason`` goes in the dead letter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def each_entry(entries: Sequence[bytes], one: Callable[[bytes], object]) -> None:
    """Apply ``one`` to every entry of a message that carries several inputs (a
    DecisionBatch): an :class:`Invalid` entry does not cost the others; the message
    is then Invalid itself, with how many and the first reason (a dead letter)."""
    bad: list[str] = []
    for entry in entries:
        try:
            one(entry)
        except Invalid as exc:
            bad.append(exc.reason)
    if bad:
        raise Invalid(f"{len(bad)} of {len(entries)} entries of the batch invalid, first: {bad[0]}")


class Incoming(msgspec.Struct, frozen=True, gc=False):
    """One input message as an app sees it (a Struct: built per message, ~10x cheaper than a dataclass)."""

    id: str
    subject: str
    stream: str
    seq: int
    data: bytes
    headers: Mapping[str, str]
    delivered: int = 1


class Outgoing(msgspec.Struct, frozen=True, gc=False):
    """One output message of an app."""

    subject: str
    data: bytes
    id: str | None = None  # default: "<service>:<input id>:<index>"
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)


class App(Protocol):
    """What a service's ``app.py`` provides to the runner."""

    name: str
    consumers: tuple[ConsumerSpec, ...]
    positions: dict[str, int]

    def handle(self, msg: Incoming) -> Sequence[Outgoing]: ...


class AppBase:
    """Defaults for the optional hooks; services subclass it."""

    name = "app"
    consumers: tuple[ConsumerSpec, ...] = ()
    stateful = False
    stateful_streams: frozenset[str] = frozenset()  # streams whose position the app owns (as if stateful)
    fetch_batch = 0  # messages per pull request (and so per commit); 0: nats.fetch_batch
    partitioned = False  # True: see assign / revoke / partition_consumers

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.positions: dict[str, int] = {}
        self.counters: Counter[str] = Counter()

    async def start(self, bus: Bus) -> None:
        """Load snapshots, open sinks."""

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        raise NotImplementedError

    async def commit(self) -> None:
        """Make everything handled so far durable (sink write, snapshot). May raise to retry."""

    async def idle(self) -> Sequence[Outgoing]:
        """Called when a fetch returned nothing: flush time-based work."""
        return ()

    async def stop(self) -> None:
        """Final snapshot, close sinks."""

    # --- partitioned apps only ---
    def partition_consumers(self, partition: int) -> tuple[ConsumerSpec, ...]:
        """The consumers that feed one partition (``partition`` set on each spec)."""
        return ()

    async def assign(self, partition: int) -> None:
        """The partition is ours: restore its state (positions under each spec's position_key)."""

    async def revoke(self, partition: int) -> None:
        """The partition's consumers have stopped: snapshot it and forget it."""


def _owns_position(app: Any, stream: str) -> bool:
    return bool(app.stateful or stream in getattr(app, "stateful_streams", ()))


_instances = itertools.count()


def _in_order(msgs: Sequence[Msg], expected: int) -> int:
    """How many of ``msgs`` carry consumer sequences expected, expected + 1, ..."""
    for i, msg in enumerate(msgs):
        if msg.metadata.sequence.consumer != expected + i:
            return i
    return len(msgs)


async def fetch_failed(app: Any, failures: int, exc: Exception) -> None:
    """A pull that failed (a node failing over, a reconnect): counted, logged, and
    waited out with a pause that grows with consecutive ``failures`` (up to 2 s)."""
    app.counters["fetch_errors"] += 1
    log.warning("%s: fetch failed (%s: %s); retrying", app.name, type(exc).__name__, exc)
    await asyncio.sleep(min(0.1 * 2**failures, 2.0))


def input_id(msg: Msg) -> str:
    hdrs = msg.headers or {}
    return hdrs.get(MSG_ID_HEADER) or f"{msg.metadata.stream}:{msg.metadata.sequence.stream}"


def dead_letter(service: str, inc: Incoming, reason: str) -> Outgoing:
    letter = DeadLetter(
        id=f"dlq:{service}:{inc.id}",
        service=service,
        reason=reason,
        subject=inc.subject,
        stream=inc.stream,
        stream_seq=inc.seq,
        payload=inc.data[:65536],
        headers={k: v for k, v in inc.headers.items() if k != MSG_ID_HEADER},
    )
    return Outgoing(dlq_subject(service), encode_json(letter), id=letter.id)


class Runner:
    """Runs one app against the bus until stopped (SIGTERM/SIGINT drain in-flight work)."""

    def __init__(self, app: AppBase, bus: Bus, instance: str | None = None, own_process: bool = False) -> None:
        self.app = app
        self.own_process = own_process  # the process is this service's alone (`vigil run`)
        self.bus = bus
        self.settings = bus.settings
        n = next(_instances)
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}" + (f"-{n}" if n else "")
        self.stopping = asyncio.Event()
        self.started = time.time()
        self.leases: Leases | None = None
        self._loops: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._error: BaseException | None = None
        self._broker: NatsBroker | None = None  # the input side (services/runtime/on_faststream.py), from run()
        self._tracer = telemetry.tracer(f"vigil.{app.name}")
        self._meters = telemetry.service_meters(app.name)
        telemetry.observe_counters(app.name, app.counters)

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.app.start(self.bus)
        from services.runtime.on_faststream import start_broker  # the input side, built on this module

        self._broker = await start_broker(self)
        if self.own_process:
            # What start-up built (FastStream and pydantic's modules, the app's loaded state)
            # lives as long as the process: out of the cyclic collector's way, or every full
            # collection walks it again (the learner at 50k ev/s: 0.52 -> 0.48 cores, docs/faststream.md)
            gc.freeze()
        for spec in self.app.consumers:
            self._start_loop(spec)
        beat = asyncio.create_task(self._heartbeats())
        leases: asyncio.Task[None] | None = None
        if self.app.partitioned:
            self.leases = Leases(
                self.bus,
                self.app.name,
                self.instance,
                self.settings.nats.partitions,
                float(self.settings.nats.lease_ttl),
                self._assign,
                self._revoke,
            )
            leases = asyncio.create_task(self.leases.run(self.stopping))
            leases.add_done_callback(self._watch)
        try:
            await self.stopping.wait()
            if leases is not None:
                await asyncio.gather(leases, return_exceptions=True)  # gives every partition up in order
            await asyncio.gather(*(task for task, _ in self._loops.values()), return_exceptions=True)
            if self._error is not None:
                raise self._error
        finally:
            self.stopping.set()
            tasks = [task for task, _ in self._loops.values()] + [beat] + ([leases] if leases else [])
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._broker is not None:
                await self._broker.stop()
            await self.app.stop()

    def _watch(self, task: asyncio.Task[None]) -> None:
        """A consumer loop or the lease task that dies with an error stops the service (it is restarted)."""
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()
            self.stopping.set()

    def _start_loop(self, spec: ConsumerSpec) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(self._consume(spec, stop), name=f"{self.app.name}:{spec.durable}")
        task.add_done_callback(self._watch)
        self._loops[spec.durable] = (task, stop)

    async def _assign(self, partition: int) -> None:
        await self.app.assign(partition)
        for spec in self.app.partition_consumers(partition):
            self._start_loop(spec)
        self.app.counters["partitions_owned"] = len(self.leases.held) if self.leases else 0

    async def _revoke(self, partition: int) -> None:
        for spec in self.app.partition_consumers(partition):
            loop = self._loops.pop(spec.durable, None)
            if loop is None:
                continue
            task, stop = loop
            stop.set()  # finish the batch in hand, then leave
            try:
                await asyncio.wait_for(asyncio.shield(task), float(self.settings.nats.lease_ttl) / 3)
            except TimeoutError:
                task.cancel()  # unacked input is redelivered to the next owner; its outputs' ids dedup
                await asyncio.gather(task, return_exceptions=True)
            except Exception:  # noqa: BLE001 - the loop's own error is reported by _watch
                pass
        await self.app.revoke(partition)
        self.app.counters["partitions_owned"] = len(self.leases.held) if self.leases else 0

    async def _consume(self, spec: ConsumerSpec, stop: asyncio.Event) -> None:
        from services.runtime.on_faststream import consume

        assert self._broker is not None, "run() starts the broker first"
        await consume(self, spec, stop, self._broker)

    def _fetch_batch(self) -> int:
        return getattr(self.app, "fetch_batch", 0) or self.settings.nats.fetch_batch

    async def _process(self, spec: ConsumerSpec, msgs: list[Msg], pub: Publisher) -> None:
        app = self.app
        current_consumer.set(spec)
        stream, key = spec.stream, spec.position_key
        for msg in msgs:
            meta = msg.metadata
            seq = meta.sequence.stream
            if _owns_position(app, stream) and seq <= app.positions.get(key, 0):
                app.counters["redelivered_skipped"] += 1
                continue
            inc = Incoming(
                id=input_id(msg),
                subject=msg.subject,
                stream=stream,
                seq=seq,
                data=msg.data,
                headers=dict(msg.headers or {}),
                delivered=meta.num_delivered,
            )
            ctx = telemetry.extract(inc.headers)
            with self._tracer.start_as_current_span(f"{app.name} handle", context=ctx) as span:
                span.set_attribute("messaging.message.id", inc.id)
                span.set_attribute("messaging.destination.name", inc.subject)
                outs = self._handle(inc)
                carrier = telemetry.inject()
            for i, out in enumerate(outs):
                headers = {**carrier, **out.headers}
                await pub.publish(out.subject, out.data, out.id or f"{app.name}:{inc.id}:{i}", headers)
            app.positions[key] = max(seq, app.positions.get(key, 0))  # a late redelivery: no step back
            app.counters["in"] += 1
            app.counters["out"] += len(outs)
            self._meters.inputs.add(1)
            self._meters.outputs.add(len(outs))
        await pub.flush()
        await self._commit()
        for msg in msgs:
            try:
                await msg.ack()
            except Exception as exc:  # noqa: BLE001 - a lost ack means a redelivery, which changes nothing
                self.app.counters["ack_errors"] += 1
                log.warning("%s: ack failed (%s); the input will be redelivered", self.app.name, exc)

    def _handle(self, inc: Incoming) -> Sequence[Outgoing]:
        try:
            return self.app.handle(inc)
        except Invalid as exc:
            reason = exc.reason
        except Exception as exc:  # noqa: BLE001 - one bad message never stops a service
            log.exception("%s: handling %s failed", self.app.name, inc.id)
            reason = f"{type(exc).__name__}: {exc}"
        self.app.counters["dead_letters"] += 1
        self._meters.dead_letters.add(1)
        return [dead_letter(self.app.name, inc, reason)]

    async def _commit(self) -> None:
        delay = float(self.settings.archive.retry_initial)
        while True:
            try:
                await self.app.commit()
                return
            except Exception as exc:  # noqa: BLE001 - the sink is retried until it takes the data
                self.app.counters["commit_retries"] += 1
                log.warning("%s: commit failed (%s); retrying in %.2fs", self.app.name, exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, float(self.settings.archive.retry_max))

    async def _heartbeats(self) -> None:
        try:
            kv = await self.bus.js.key_value(HEARTBEAT_BUCKET)
        except Exception:  # noqa: BLE001 - heartbeats are best effort
            log.warning("no heartbeat bucket; run ensure_streams first")
            return
        key = f"{self.app.name}.{self.instance}".replace(":", "_")
        while not self.stopping.is_set():
            beat = Heartbeat(
                service=self.app.name,
                instance=self.instance,
                host=socket.gethostname(),
                pid=os.getpid(),
                started=self.started,
                updated=time.time(),
                position=max(self.app.positions.values(), default=0),
                counters=dict(self.app.counters),
            )
            try:
                await kv.put(key, encode_json(beat))
            except Exception as exc:  # noqa: BLE001
                log.debug("heartbeat failed: %s", exc)
            try:
                await asyncio.wait_for(self.stopping.wait(), float(self.settings.telemetry.heartbeat_interval))
            except TimeoutError:
                pass
        try:
            await kv.delete(key)
        except Exception:  # noqa: BLE001
            pass


async def serve(app: AppBase, settings: Settings, bus: Bus | None = None) -> None:
    """Run an app until SIGTERM/SIGINT; used by `vigil run SERVICE`."""
    own_bus = bus is None
    bus = bus or await connect(settings, name=f"vigil-{app.name}")
    try:
        await bus.ensure_streams()
        await retry_transient("creating buckets", lambda: ensure_buckets(bus))
        runner = Runner(app, bus, own_process=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        await runner.run()
    finally:
        if own_bus:
            await bus.close()
