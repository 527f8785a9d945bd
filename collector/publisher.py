"""Batching publisher: raw events → msgpack EventBatch messages on EVENTS.

Events are routed by profile key (image name) to a partition; each partition
has its own gap-free sequence under (node, boot), so the batch id
``ev:<node>:<boot>:<partition>:<first_seq>`` is deterministic and a batch
published twice (a restarted collector, a re-run trace) is stored once.
Clock ticks carry no container and go to every partition so that every
learner's event time advances.

While EVENTS refuses writes (it is full: discard new, docs/configuration.md
"Storage"), a batch it refused is **held** in memory, per partition in
sequence order, and retried with its own id (a retry that did land is dropped
by JetStream's dedup); a partition with held batches holds its new ones behind
them. Held bytes are bounded (``hold_bytes``); past the bound a batch is
dropped and its events counted per cause (``dropped``). Nothing here waits for
the stream to have room: the caller (the kernel ring buffer's drain) is never
blocked by a full stream.

Order: batches are pipelined (many in flight) only while EVENTS has room to
spare: ``room()`` says how many bytes it takes before compaction is due, and
half of that may be published before asking again. Past it the publisher is
*strict*: every batch goes through the hold queue, which publishes one batch
per partition at a time. So a refused batch is never overtaken by a later
(smaller) one of its partition that still fitted, and the learner sees a
node's batches in the order a run without limits would.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from contracts.codec import encode_batch
from contracts.events import EVENTS_HEADER, MAX_TIME_HEADER, ClockTicked, EventBatch, RawEvent
from contracts.headers import MSG_ID_HEADER
from contracts.subjects import events_subject, partition_of
from services.runtime.bus import Publisher
from services.runtime.errors import StreamFull
from services.runtime.telemetry import inject, tracer

_tracer = tracer("vigil.collector")


_CACHED_IMAGES = 4096  # image name → partition memo; a node runs far fewer images
_RETRY_FIRST, _RETRY_MAX = 0.05, 1.0  # seconds between attempts to publish held batches (doubling)


@dataclass(order=True)
class Held:
    """A batch EVENTS refused, waiting for room (ordered by its first sequence)."""

    first_seq: int
    events: int = field(compare=False)
    subject: str = field(compare=False)
    data: bytes = field(compare=False)
    headers: dict[str, str] = field(compare=False)


class BatchingPublisher:
    def __init__(
        self,
        publisher: Publisher,
        node: str,
        boot: str,
        partitions: int,
        batch_size: int = 500,
        hold_bytes: int = 0,
        room: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        """With ``hold_bytes`` > 0, batches refused by a full EVENTS are held (up to that
        many bytes) and retried; with 0 a refusal is an error of :meth:`drain`, as any.
        ``room`` (with ``hold_bytes``): bytes EVENTS takes before compaction is due (None:
        unbounded), asked when the pipelined budget is spent."""
        self.publisher = publisher
        self.node = node
        self.boot = boot
        self.partitions = partitions
        self.batch_size = batch_size
        self.buffers: list[list[RawEvent]] = [[] for _ in range(partitions)]
        self.next_seq = [0] * partitions
        self.events = 0
        self.batches = 0
        self._partition_of: dict[str, int] = {}
        self.hold_bytes = hold_bytes
        self.held: dict[int, list[Held]] = {}
        self.held_bytes = 0
        self.refused = 0  # refusals (a batch refused twice counts twice)
        self.dropped: Counter[str] = Counter()  # events dropped, per cause
        self.last_refusal = ""
        self._retry_at = 0.0
        self._retry_delay = _RETRY_FIRST
        self.room = room if hold_bytes > 0 else None
        self.strict = False
        self._budget = 0  # bytes that may still be pipelined before asking room() again
        self._probed_at = 0.0
        self._refused_now: set[tuple[int, int]] = set()
        if hold_bytes > 0:
            publisher.on_full = self._on_refused

    async def add(self, event: RawEvent) -> None:
        await self.add_all((event,))

    async def add_all(self, events: Iterable[RawEvent]) -> None:
        """Route each event to its partition's buffer; a full buffer is published.
        The per-event path is plain Python (no await, the crc32 memoised per image):
        it is what bounds the collector's publish rate."""
        buffers, size, memo = self.buffers, self.batch_size, self._partition_of
        for event in events:
            if isinstance(event, ClockTicked):
                for p in range(self.partitions):
                    buffers[p].append(event)
                    if len(buffers[p]) >= size:
                        await self._send(p)
                continue
            image = event.container.image_name
            p = memo.get(image, -1)
            if p < 0:
                if len(memo) >= _CACHED_IMAGES:
                    memo.clear()
                p = memo[image] = partition_of(image, self.partitions)
            buf = buffers[p]
            buf.append(event)
            if len(buf) >= size:
                await self._send(p)

    async def flush_batches(self) -> None:
        """Publish every partial batch (call on a timer for live sources)."""
        for p in range(self.partitions):
            if self.buffers[p]:
                await self._send(p)

    async def drain(self) -> None:
        """Publish what is buffered and wait until JetStream stored (or refused, when
        refusals are held) all of it; then give held batches a try when one is due."""
        await self.flush_batches()
        await self.publisher.flush()
        if self.held and time.monotonic() >= self._retry_at:
            await self.retry_held()

    async def retry_held(self, rounds: int = 64) -> int:
        """Publish held batches in rounds of one per partition (each partition's oldest),
        until none is left or one is refused again (then back off). Returns how many were stored."""
        stored, refused = 0, False
        for _ in range(rounds):
            heads = [(partition, batches[0]) for partition, batches in self.held.items()]
            if not heads:
                break
            self._refused_now.clear()
            for _partition, head in heads:  # heads stay held while in flight: new batches queue behind them
                await self.publisher.publish(head.subject, head.data, head.headers[MSG_ID_HEADER], head.headers)
            await self.publisher.flush()
            for partition, head in heads:
                if (partition, head.first_seq) in self._refused_now:
                    refused = True
                    continue
                batches = self.held[partition]
                batches.remove(head)
                self.held_bytes -= len(head.data)
                if not batches:
                    del self.held[partition]
                stored += 1
            if refused:
                break
        self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX) if refused else _RETRY_FIRST
        self._retry_at = time.monotonic() + (self._retry_delay if refused else 0.0)
        return stored

    def drop_held(self, cause: str) -> int:
        """Give up every held batch (counted under ``cause``); returns the events dropped."""
        events = sum(b.events for batches in self.held.values() for b in batches)
        self.dropped[cause] += events
        self.held.clear()
        self.held_bytes = 0
        return events

    def storage_counters(self) -> dict[str, int]:
        out = {"held_batches": sum(len(b) for b in self.held.values()), "held_bytes": self.held_bytes}
        out.update(refused=self.refused, **{f"dropped_{cause}": n for cause, n in sorted(self.dropped.items())})
        return out

    def _on_refused(self, subject: str, data: bytes, headers: dict[str, str], why: StreamFull) -> None:
        self.refused += 1
        self.last_refusal = str(why)
        _, partition, first = headers[MSG_ID_HEADER].rsplit(":", 2)  # ev:<node>:<boot>:<partition>:<first_seq>
        self._refused_now.add((int(partition), int(first)))
        self._hold(int(partition), Held(int(first), int(headers.get(EVENTS_HEADER, "0")), subject, data, headers))

    async def _probe(self, every: float = 0.1) -> None:
        """Ask how much room EVENTS has (at most every ``every`` s while strict)."""
        assert self.room is not None
        if self.strict and time.monotonic() - self._probed_at < every:
            return
        self._probed_at = time.monotonic()
        try:
            room = await self.room()
        except Exception:  # noqa: BLE001 - unknown (the bus is failing over): careful until known
            room = 0
        self._budget = (1 << 62) if room is None else room // 2  # half: other nodes publish too
        self.strict = self._budget <= 0

    def _hold(self, partition: int, batch: Held) -> None:
        batches = self.held.get(partition, [])
        i = bisect.bisect_left(batches, batch)
        if i < len(batches) and batches[i].first_seq == batch.first_seq:
            return  # a held batch refused again on its retry
        if self.held_bytes + len(batch.data) > self.hold_bytes:
            self.dropped["stream_full"] += batch.events
            return
        bisect.insort(self.held.setdefault(partition, []), batch)
        self.held_bytes += len(batch.data)

    async def _send(self, partition: int) -> None:
        events = self.buffers[partition]
        self.buffers[partition] = []
        batch = EventBatch(
            node=self.node, boot=self.boot, first_seq=self.next_seq[partition], partition=partition, events=events
        )
        self.next_seq[partition] += len(events)
        with _tracer.start_as_current_span("collector batch") as span:
            span.set_attribute("vigil.events", len(events))
            headers = inject()
        headers[MAX_TIME_HEADER] = str(max(e.time for e in events))
        data = encode_batch(batch)
        self.events += len(events)
        if self.room is not None and (len(data) > self._budget or self.strict):
            await self._probe()
        if partition in self.held or self.strict:  # behind batches waiting, or little room: in order, one at a time
            headers.update({MSG_ID_HEADER: batch.id, EVENTS_HEADER: str(len(events))})
            self._hold(partition, Held(batch.first_seq, len(events), events_subject(partition), data, headers))
            self.batches += 1
            return
        if self.hold_bytes:
            headers[EVENTS_HEADER] = str(len(events))
        self._budget -= len(data)
        await self.publisher.publish(events_subject(partition), data, batch.id, headers)
        self.batches += 1
