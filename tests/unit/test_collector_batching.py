"""BatchingPublisher's routing: every event in its image's partition, in order,
gap-free sequences per partition, clock ticks in every partition — also when the
image → partition memo overflows and is cleared."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from collector import publisher as batching
from contracts.codec import decode_batch
from contracts.events import ClockTicked, Container, FileAccess, FileOpened, Process
from contracts.headers import MSG_ID_HEADER, EventBatchHeaders
from contracts.subjects import partition_of


class Recording:
    """Stands in for the bus Publisher: keeps what would have been published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str]] = []
        self.headers: list[dict[str, str]] = []  # as the bus Publisher sends them, Nats-Msg-Id included

    async def publish(self, subject: str, data: bytes, msg_id: str, headers: dict[str, str] | None = None) -> None:
        self.sent.append((subject, data, msg_id))
        self.headers.append({MSG_ID_HEADER: msg_id, **(headers or {})})

    async def flush(self) -> list[object]:
        return []


def opened(i: int, images: int) -> FileOpened:
    return FileOpened(
        time=1_000 + i,
        node="n1",
        container=Container(id=f"c{i % 7}", image_name=f"img-{i % images}"),
        process=Process(pid=10, ppid=1, comm="w", path="/w"),
        file=FileAccess(path=f"/f{i}", flags=0),
    )


@pytest.mark.parametrize("memo_size", [4096, 2])
def test_events_land_in_their_partition_in_order_with_ticks_everywhere(monkeypatch, memo_size: int) -> None:
    monkeypatch.setattr(batching, "_CACHED_IMAGES", memo_size)
    events = [opened(i, images=9) for i in range(200)]
    events[50:50] = [ClockTicked(time=1_050, node="n1")]
    rec = Recording()
    pub = batching.BatchingPublisher(rec, "n1", "b", partitions=4, batch_size=7)  # type: ignore[arg-type]
    asyncio.run(pub.add_all(events[:120]))
    for event in events[120:]:
        asyncio.run(pub.add(event))
    asyncio.run(pub.drain())

    found = [decode_batch(data) for _, data, _ in rec.sent]
    assert [msg_id for _, _, msg_id in rec.sent] == [b.id for b in found]
    per_partition: dict[int, list[object]] = {p: [] for p in range(4)}
    for (subject, _, _), batch in zip(rec.sent, found, strict=True):
        assert subject == f"vigil.events.{batch.partition}" and 0 < len(batch.events) <= 7
        assert batch.first_seq == len(per_partition[batch.partition])  # no gap, no overlap
        per_partition[batch.partition].extend(batch.events)
    for p, got in per_partition.items():
        expected = [e for e in events if isinstance(e, ClockTicked) or partition_of(e.container.image_name, 4) == p]
        assert got == expected
    assert pub.events == sum(len(b.events) for b in found) == 200 + 4
    assert len(pub._partition_of) <= memo_size


@pytest.mark.parametrize("hold_bytes", [0, 1 << 20])
def test_every_batch_carries_the_headers_docs_asyncapi_promises(hold_bytes: int) -> None:
    """contracts.headers.EventBatchHeaders (docs/asyncapi.yaml's EventBatch headers) holds
    for what the collector sends, with and without holding batches; the max time is the batch's."""
    rec = Recording()
    pub = batching.BatchingPublisher(rec, "n1", "b", partitions=2, batch_size=5, hold_bytes=hold_bytes)  # type: ignore[arg-type]
    asyncio.run(pub.add_all([opened(i, images=3) for i in range(23)]))
    asyncio.run(pub.drain())
    assert rec.headers
    for (_, data, _), headers in zip(rec.sent, rec.headers, strict=True):
        promised = msgspec.convert(headers, EventBatchHeaders)
        batch = decode_batch(data)
        assert int(promised.max_time) == max(e.time for e in batch.events)
        assert promised.events == (str(len(batch.events)) if hold_bytes else msgspec.UNSET)
