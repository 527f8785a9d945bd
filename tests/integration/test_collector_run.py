"""run_collector end to end on a real nats-server with the sources that need no
root: synthetic (partitioning, ticks) and trace:FILE (exactly-once re-runs),
plus the workload registry fed by a file and the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import msgspec

from collector.main import Collector, collector_available, run_collector
from collector.workloads import Registry, bucket
from contracts import trace
from contracts.codec import decode_batch
from contracts.events import ClockTicked, Container, FileAccess, FileOpened, Process
from contracts.subjects import EVENTS, partition_of
from services.runtime.settings import Settings
from tests.support import make_settings, open_bus, read_stream, service_env


async def batches(settings: Settings) -> list[object]:
    bus = await open_bus(settings)
    try:
        return [decode_batch(m.data) for m in await read_stream(bus, EVENTS)]
    finally:
        await bus.close()


def test_synthetic_source_partitions_by_image_and_ticks(settings: Settings) -> None:
    s = make_settings(
        Path(settings.data_dir),
        settings.nats.url,
        COLLECTOR_SOURCE="synthetic",
        COLLECTOR_SYNTHETIC_EVENTS="3000",
        COLLECTOR_SYNTHETIC_RATE="200000",
        COLLECTOR_SYNTHETIC_IMAGES="3",
        COLLECTOR_SYNTHETIC_CONTAINERS="6",
        COLLECTOR_NODE="n1",
    )
    assert collector_available(s) == (True, "synthetic")
    stats = asyncio.run(run_collector(s))
    found = asyncio.run(batches(s))
    events = [(b.partition, e) for b in found for e in b.events]
    real = [(p, e) for p, e in events if not isinstance(e, ClockTicked)]
    ticks = [(p, e) for p, e in events if isinstance(e, ClockTicked)]
    assert len(real) == 3000 == stats["records"]
    assert {e.container.image_name for _, e in real} == {f"synthetic/app-{i}" for i in range(3)}
    assert all(p == partition_of(e.container.image_name, s.nats.partitions) for p, e in real)
    assert {p for p, _ in ticks} == set(range(s.nats.partitions)) and all(e.node == "n1" for _, e in ticks)
    for b in found:  # batch ids are (node, boot, partition, seq): the boot names the kernel boot
        assert (
            b.node == "n1"
            and b.boot.split("-")[0] == open("/proc/sys/kernel/random/boot_id").read().strip().replace("-", "")[:16]
        )


def opens_trace(tmp_path: Path, c: Container, prefix: str, n: int) -> tuple[list[FileOpened], Path]:
    """``n`` opens of ``prefix<i>`` by one container, written as a JSONL trace file."""
    events = [
        FileOpened(
            time=10**18 + i * 1000, node="n", container=c, process=Process(pid=1), file=FileAccess(path=f"{prefix}{i}")
        )
        for i in range(n)
    ]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(trace.write(events)))
    return events, path


def test_trace_source_is_exactly_once_across_reruns(settings: Settings, tmp_path: Path) -> None:
    events, path = opens_trace(tmp_path, Container(id="c1", image_name="nginx", image_tag="1.25"), "/f", 1200)
    s = make_settings(
        Path(settings.data_dir), settings.nats.url, COLLECTOR_SOURCE=f"trace:{path}", COLLECTOR_BATCH_SIZE="500"
    )
    asyncio.run(run_collector(s))
    first = asyncio.run(batches(s))
    # the same trace again, through the CLI (`vigil collect` with no --from uses collector.source)
    env = {**service_env(s), "VIGIL_COLLECTOR_SOURCE": f"trace:{path}", "VIGIL_COLLECTOR_BATCH_SIZE": "500"}
    out = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "collect"], env=env, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    again = asyncio.run(batches(s))
    assert [e for b in again for e in b.events] == events  # nothing stored twice, no ticks for a trace
    assert len(first) == len(again) == 3


def test_workloads_file_cli_and_watch(settings: Settings, tmp_path: Path) -> None:
    cid = "ab" * 32
    wfile = tmp_path / "workloads.yaml"
    wfile.write_text(f"workloads:\n- {{container_id: '{cid}', image: 'shop/api:3.1', pod: api-0, namespace: shop}}\n")
    s = make_settings(
        Path(settings.data_dir),
        settings.nats.url,
        COLLECTOR_SOURCE="synthetic",
        COLLECTOR_SYNTHETIC_EVENTS="10",
        COLLECTOR_WORKLOADS_FILE=str(wfile),
    )
    collector = Collector(s)
    asyncio.run(collector.run())
    assert collector.registry.get(cid) is not None  # seeded from the file, learned through the watch
    env = service_env(s)

    def vigil(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli.main", *args], env=env, capture_output=True, text=True, timeout=60
        )

    listed = [json.loads(line) for line in vigil("workloads", "list", "-o", "json").stdout.splitlines()]
    assert listed == [
        {
            "container_id": cid,
            "image_name": "shop/api",
            "image_tag": "3.1",
            "pod": "api-0",
            "namespace": "shop",
            "source": "file",
        }
    ]
    table = vigil("workloads", "list").stdout  # docker's short ids and the state, not a wrapped 64-hex id
    assert cid[:12] in table and cid not in table and "running" in table
    other = "cd" * 32
    assert vigil("workloads", "add", other, "--image", "redis:7", "--pod", "r-0").returncode == 0
    assert vigil("workloads", "remove", cid).returncode == 0
    assert vigil("workloads", "remove", cid).returncode == 1  # already gone: says so

    async def watch() -> dict[str, object]:
        bus = await open_bus(s)
        reg = Registry()
        try:
            await reg.start(await bucket(bus.js))
            return {k: msgspec.to_builtins(w) for k, w in reg.by_id.items()}
        finally:
            await reg.stop()
            await bus.close()

    seen = asyncio.run(watch())
    assert set(seen) == {other}
    assert seen[other]["image_name"] == "redis" and seen[other]["source"] == "cli"


def test_events_tail_prints_trace_shaped_json(settings: Settings, tmp_path: Path) -> None:
    events, path = opens_trace(tmp_path, Container(id="c9", image_name="web"), "/x", 5)
    s = make_settings(Path(settings.data_dir), settings.nats.url, COLLECTOR_SOURCE=f"trace:{path}")
    asyncio.run(run_collector(s))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli.main",
            "events",
            "tail",
            "-o",
            "json",
            "-n",
            "2",
            "--kind",
            "open",
            "--image",
            "web",
        ],
        env=service_env(s),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [o["file"]["path"] for o in lines] == ["/x3", "/x4"]
    assert trace.from_obj(lines[0]) == events[3]


def test_a_full_events_stream_never_stops_the_collector_and_every_event_is_stored_or_counted(
    settings: Settings,
) -> None:
    """EVENTS at a 256 KiB limit, nobody consuming: the collector keeps taking events,
    holds what it cannot store yet (refused, or queued one batch per partition once
    EVENTS is past compact_at) up to its 64 KiB buffer, drops the rest counted by
    cause, and finishes (the synthetic source, like the kernel's, is never made to wait)."""
    s = make_settings(
        Path(settings.data_dir),
        settings.nats.url,
        COLLECTOR_SOURCE="synthetic",
        COLLECTOR_SYNTHETIC_EVENTS="20000",
        COLLECTOR_SYNTHETIC_RATE="200000",
        COLLECTOR_NODE="n1",
        STREAMS_EVENTS_MAX_BYTES="256KiB",
        STORAGE_COLLECTOR_BUFFER_BYTES="64KiB",
    )
    stats = asyncio.run(run_collector(s))
    stored = sum(len(b.events) for b in asyncio.run(batches(s)))  # type: ignore[attr-defined]
    dropped = {k: v for k, v in stats.items() if k.startswith("dropped_")}
    assert stats["records"] == 20000
    assert dropped.get("dropped_stream_full", 0) > 0 and stored > 0
    assert stats["held_batches"] == 0  # what was still held at the end was given up, counted
    assert stored + sum(dropped.values()) == stats["events"]  # ticks included: every event stored or counted
