"""Runtime throughput: N synthetic raw events through Vigil's batching publisher
and service runner, next to the raw nats-py ceiling measured in the same run.

    python -m bench.runtime [--events N] [--batch 500] [--quick]

Prints events/s published (acked by JetStream) and consumed+decoded, and the
ratio to nats-py's own publish_async / fetch paths on identical payloads.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import write_figures
from collector.publisher import BatchingPublisher
from contracts.codec import decode_batch, encode_batch
from contracts.events import Container, EventBatch, FileAccess, FileOpened, Process, RawEvent
from contracts.subjects import EVENTS, ConsumerSpec
from services.runtime import embedded
from services.runtime.bus import connect, ensure_buckets
from services.runtime.service import AppBase, Incoming, Outgoing, Runner
from services.runtime.settings import load_settings

T0 = 1_767_225_600_000_000_000


def synthetic(n: int) -> list[FileOpened]:
    containers = [Container(id=f"c{i}", image_name=f"img{i % 20}", image_tag="1.0") for i in range(100)]
    return [
        FileOpened(
            time=T0 + i * 1000,
            node="n1",
            container=containers[i % 100],
            process=Process(pid=1000 + i % 5000, ppid=1, comm="worker", path="/usr/bin/worker"),
            file=FileAccess(path=f"/var/lib/app/data/{i % 1000}.db", flags=0),
        )
        for i in range(n)
    ]


class Counting(AppBase):
    """Counts events; remembers when the first input came (the runner's start-up — a
    connection, a consumer — is not consumption: with --quick it is as long as the run)."""

    name = "bench-counter"
    consumers = (ConsumerSpec(EVENTS, "bench-counter"),)
    first: float | None = None

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        if self.first is None:
            self.first = time.perf_counter()
        self.counters["events"] += len(decode_batch(msg.data).events)
        return ()


async def raw_ceiling(url: str, payloads: list[bytes], per_msg: int) -> tuple[float, float]:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="RAW", subjects=["raw.>"])
    start = time.perf_counter()
    futs = [await js.publish_async("raw.0", p, wait_stall=5.0) for p in payloads]
    await asyncio.gather(*futs)
    pub_rate = len(payloads) * per_msg / (time.perf_counter() - start)
    sub = await js.pull_subscribe("raw.0", durable="raw", stream="RAW")
    start = time.perf_counter()
    seen = 0
    while seen < len(payloads):
        for m in await sub.fetch(64, timeout=5):
            decode_batch(m.data)
            await m.ack()
            seen += 1
    con_rate = len(payloads) * per_msg / (time.perf_counter() - start)
    await nc.close()
    return pub_rate, con_rate


async def vigil_rates(data_dir: Path, url: str, events: list[FileOpened], batch: int) -> tuple[float, float]:
    settings = load_settings(env={"VIGIL_DATA_DIR": str(data_dir), "VIGIL_NATS_URL": url, "VIGIL_NATS_PARTITIONS": "1"})
    bus = await connect(settings)
    await bus.ensure_streams()
    await ensure_buckets(bus)
    start = time.perf_counter()
    async with bus.publisher() as pub:
        batcher = BatchingPublisher(pub, "n1", "bench", 1, batch)
        await batcher.add_all(events)
        await batcher.drain()
    pub_rate = len(events) / (time.perf_counter() - start)
    app = Counting(settings)
    runner = Runner(app, bus)
    task = asyncio.create_task(runner.run())
    while app.counters["events"] < len(events):
        await asyncio.sleep(0.005)
    assert app.first is not None
    con_rate = len(events) / (time.perf_counter() - app.first)
    runner.stop()
    await task
    await bus.close()
    return pub_rate, con_rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="200k events")
    parser.add_argument("--json", type=Path, help="also write the figures to this file (bench.compare reads it)")
    args = parser.parse_args(argv)
    n = 200_000 if args.quick else args.events
    events = synthetic(n)
    payloads = [
        encode_batch(EventBatch(node="n1", boot="raw", first_seq=i, events=list[RawEvent](events[i : i + args.batch])))
        for i in range(0, n, args.batch)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        server = embedded.start(Path(tmp) / "nats", port=-1)
        try:
            raw_pub, raw_con = asyncio.run(raw_ceiling(server.url, payloads, args.batch))
            v_pub, v_con = asyncio.run(vigil_rates(Path(tmp) / "vigil", server.url, events, args.batch))
        finally:
            server.stop()
    print(f"events: {n:,}, {args.batch} per message, {len(payloads[0]) / args.batch:.0f} bytes/event")
    print(f"{'':<28}{'vigil':>12}{'nats-py raw':>14}{'ratio':>8}")
    print(f"{'published (acked) ev/s':<28}{v_pub:>12,.0f}{raw_pub:>14,.0f}{v_pub / raw_pub:>8.2f}")
    print(f"{'consumed + decoded ev/s':<28}{v_con:>12,.0f}{raw_con:>14,.0f}{v_con / raw_con:>8.2f}")
    print("targets: >= 500,000 ev/s published, >= 300,000 ev/s consumed and decoded")
    write_figures(
        args.json,
        {
            "published_ev_s": v_pub,
            "consumed_ev_s": v_con,
            "published_of_raw": v_pub / raw_pub,
            "consumed_of_raw": v_con / raw_con,
        },
    )


if __name__ == "__main__":
    main()
