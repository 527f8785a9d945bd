"""What bounded storage costs the collector's publisher: events/s published and acked
while EVENTS has room (pipelined) and once it holds ``storage.compact_at`` of its limit
(strict: one batch per partition in flight, so a refused batch is never overtaken).

    python -m bench.storage [--events N] [--batch 500]

Each mode runs on its own embedded nats-server; no consumer, no refusals (the limit is
far above what is published): only the publishing discipline differs.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.runtime import synthetic
from collector.publisher import BatchingPublisher
from services.runtime import embedded
from services.runtime.bus import connect
from services.runtime.settings import Settings, load_settings
from services.runtime.storage import room_before_compaction


async def publish_rate(settings: Settings, events: list[object], batch: int) -> tuple[float, bool]:
    bus = await connect(settings, start_embedded=False)
    try:
        await bus.ensure_streams()
        async with bus.publisher() as pub:
            batcher = BatchingPublisher(
                pub,
                "n1",
                "bench",
                settings.nats.partitions,
                batch,
                hold_bytes=settings.storage.collector_buffer_bytes,
                room=lambda: room_before_compaction(bus.js, settings),
            )
            start = time.perf_counter()
            for i in range(0, len(events), 5000):
                await batcher.add_all(events[i : i + 5000])  # type: ignore[arg-type]
                await batcher.drain()
            while batcher.held:
                await batcher.drain()
            elapsed = time.perf_counter() - start
            assert not batcher.dropped and not batcher.refused, (batcher.dropped, batcher.refused)
            return len(events) / elapsed, batcher.strict
    finally:
        await bus.close()


def run_mode(compact_at: str, events: list[object], batch: int) -> tuple[float, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        server = embedded.start(Path(tmp) / "nats", port=-1)
        try:
            env = {
                "VIGIL_DATA_DIR": tmp,
                "VIGIL_NATS_URL": server.url,
                "VIGIL_STREAMS_EVENTS_MAX_BYTES": "4GiB",
                "VIGIL_STORAGE_COMPACT_AT": compact_at,
            }
            return asyncio.run(publish_rate(load_settings(env=env), events, batch))
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    events: list[object] = list(synthetic(args.events))
    # 0.5 of 4 GiB: room all along (pipelined); 0.00001 of 4 GiB (~43 KB): strict after the first batches
    for label, compact_at in (("pipelined (room)", "0.5"), ("strict (past compact_at)", "0.00001")):
        rate, strict = run_mode(compact_at, events, args.batch)
        print(f"{label:26s} {rate / 1000:8.0f}k ev/s   (ended strict: {strict})")


if __name__ == "__main__":
    main()
