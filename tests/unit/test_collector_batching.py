"""BatchingPublisher's routing: every event in its image's partition, in order,
gap-free sequences per partition, clock ticks in every partition — also when the
image → partition memo overflows and is cleared."""

from __future__ import annotations

import asyncio

import pytest

from collector import publisher as batching
from contracts.codec import decode_batch
from contracts.events import ClockTicked, Container, FileAccess, FileOpened, Process
from contracts.subjects import partition_of


class Recording:
    """Stands in for the bus Publisher: keeps what would have been published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str]] = []

    async def publish(self, subject: str, data: bytes, msg_id: str, headers: object = None) -> None:
        self.sent.append((subject, data, msg_id))

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
