"""Batching publisher: raw events → msgpack EventBatch messages on EVENTS.

Events are routed by profile key (image name) to a partition; each partition
has its own gap-free sequence under (node, boot), so the batch id
``ev:<node>:<boot>:<partition>:<first_seq>`` is deterministic and a batch
published twice (a restarted collector, a re-run trace) is stored once.
Clock ticks carry no container and go to every partition so that every
learner's event time advances.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.codec import encode_batch
from contracts.events import MAX_TIME_HEADER, ClockTicked, EventBatch, RawEvent
from contracts.subjects import events_subject, partition_of
from services.runtime.bus import Publisher
from services.runtime.telemetry import inject, tracer

_tracer = tracer("vigil.collector")


_CACHED_IMAGES = 4096  # image name → partition memo; a node runs far fewer images


class BatchingPublisher:
    def __init__(self, publisher: Publisher, node: str, boot: str, partitions: int, batch_size: int = 500) -> None:
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
        """Publish what is buffered and wait until JetStream stored all of it."""
        await self.flush_batches()
        await self.publisher.flush()

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
        await self.publisher.publish(events_subject(partition), encode_batch(batch), batch.id, headers)
        self.events += len(events)
        self.batches += 1
