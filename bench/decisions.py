"""Decision log figures: intake lines/s through the unix socket into JetStream, and
Gatekeeper's export as it ships through the socket and from its disk-export
directory (the same lines, same run); archive ingest (the archiver's decode → row →
upsert → commit path); the archiver end to end from the stream (one decision per
message, and DecisionBatches as the intake publishes them); a GROUP BY over a large
archive.

    .venv/bin/python -m bench.decisions [--quick] [--lines N] [--ingest N] [--rows N]

Targets: archive ingest >= 200k decisions/s; GROUP BY over 10M archived
decisions <= 1 s. Machines are shared and noisy: compare ratios within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import msgspec

from contracts.codec import encode_json
from contracts.decisions import Decision, DecisionBatch
from contracts.intake import Accepted, normalise
from contracts.subjects import DECISIONS, INTAKE_DECISIONS
from services.decision_intake.app import Intake
from services.decision_intake.client import GatekeeperDisk, export_line, export_marker, gatekeeper_line, send_lines
from services.decision_intake.directory import Follower
from services.decision_log_archiver import core, query
from services.decision_log_archiver.app import DURABLE, Archiver
from services.runtime import embedded
from services.runtime.bus import Bus, Publisher, connect, ensure_buckets
from services.runtime.service import Incoming, Runner
from services.runtime.settings import Settings, load_settings


def _settings(data: Path, url: str) -> Settings:
    return load_settings(env={"VIGIL_DATA_DIR": str(data), "VIGIL_NATS_URL": url})


async def _bus(settings: Settings) -> Bus:
    bus = await connect(settings, start_embedded=False)
    await bus.ensure_streams()
    await ensure_buckets(bus)
    return bus


RUN_LINES = 10_000  # violations per audit run in the shipped-format figures


def shipped_lines(n: int) -> list[bytes]:
    """``n`` lines of Gatekeeper's export as it ships: audit runs of :data:`RUN_LINES`
    violations between their markers."""
    out: list[bytes] = []
    for first in range(0, n, RUN_LINES):
        run = f"2026-01-{10 + first // RUN_LINES // 24:02d}T{first // RUN_LINES % 24:02d}:00:00Z"
        out += [export_marker(run, True), *(export_line(i, run) for i in range(first, min(n, first + RUN_LINES)))]
        out.append(export_marker(run, False))
    return out


async def bench_intake(settings: Settings, n: int, connections: int, shipped: bool = False) -> float:
    """Lines/s from the first write to the last answer (every line stored in JetStream);
    ``shipped``: Gatekeeper's export lines (:func:`shipped_lines`) instead of the seed's."""
    bus = await _bus(settings)
    intake = Intake(settings, bus, settings.data_path / "bench.sock")
    await intake.start()
    per = n // connections
    if shipped:
        batches = [shipped_lines(per)]
        per = len(batches[0])
    else:
        batches = [[gatekeeper_line(c * per + i, prefix=f"in{c}") for i in range(per)] for c in range(connections)]
    try:
        start = time.perf_counter()
        results = await asyncio.gather(*(send_lines(intake.path, lines, chunk_lines=1000) for lines in batches))
        seconds = time.perf_counter() - start
    finally:
        await intake.stop()
        await bus.close()
    assert all(a["ok"] for answers in results for a in answers)
    return per * connections / seconds


async def bench_directory(settings: Settings, n: int) -> float:
    """Lines/s of the directory follower over :func:`shipped_lines` written as Gatekeeper's
    disk driver writes them (completed ``.log`` runs, written before the clock starts),
    from its first pass to the last line stored in JetStream and its offsets saved."""
    lines = shipped_lines(n)
    disk = GatekeeperDisk(settings.data_path / "gatekeeper", max_audit_results=len(lines))
    for line in lines:
        if b'"audit is started"' in line:
            disk.start(msgspec.json.decode(line)["id"])
        elif b'"audit is completed"' in line:
            disk.complete()
        else:
            disk.write(line)
    bus = await _bus(settings)
    follower = Follower(settings, bus, disk.dir.parent)
    follower.load()
    try:
        async with Publisher(bus.nc, window=settings.nats.publish_window) as pub:
            start = time.perf_counter()
            while await follower.step(pub) or follower.counters["dir_lines"] < len(lines):
                pass
            seconds = time.perf_counter() - start
    finally:
        follower.close()
        await bus.close()
    assert follower.counters["dir_accepted"] == len(lines), follower.counters
    return len(lines) / seconds


def bench_ingest(settings: Settings, n: int) -> float:
    """Decisions/s through Archiver.handle + commit (batches of archive.batch_size), no broker."""
    payloads = []
    for i in range(n):
        result = normalise(gatekeeper_line(i, prefix="ing"))
        assert isinstance(result, Accepted)
        payloads.append(encode_json(result.message))
    archiver = Archiver(settings)
    batch = settings.archive.batch_size

    async def run() -> float:
        start = time.perf_counter()
        for first in range(0, n, batch):
            for seq in range(first, min(n, first + batch)):
                inc = Incoming(
                    id=str(seq), subject=INTAKE_DECISIONS, stream=DECISIONS, seq=seq + 1, data=payloads[seq], headers={}
                )
                archiver.handle(inc)
            archiver.positions[DECISIONS] = min(n, first + batch)
            await archiver.commit()
        return time.perf_counter() - start

    seconds = asyncio.run(run())
    assert archiver.con is not None
    assert archiver.con.execute("SELECT count(*) FROM decisions").fetchone() == (n,)
    archiver._close()
    return n / seconds


async def bench_end_to_end(settings: Settings, n: int, queue_fetch: bool = True, per_message: int = 1) -> float:
    """Decisions/s from a stream backlog (n more) to committed and acked; ``per_message`` > 1
    publishes them as DecisionBatch messages (as the intake does with a socket read's lines);
    ``queue_fetch=False`` pulls with nats-py's own fetch (what the archiver did before)."""
    bus = await _bus(settings)
    try:
        async with bus.publisher() as pub:
            decisions = [
                Decision(
                    id=f"e2e-{i}",
                    time=1_767_225_600_000_000_000 + i,
                    source="bench",
                    event_type="anomaly",
                    action="alert",
                )
                for i in range(n)
            ]
            for first in range(0, n, per_message):
                group = decisions[first : first + per_message]
                if per_message == 1:
                    await pub.publish("vigil.decisions.bench", encode_json(group[0]), group[0].id)
                else:
                    batch = DecisionBatch(id=f"e2e-batch-{first}", messages=list(group))
                    await pub.publish("vigil.decisions.bench", encode_json(batch), batch.id)
            await pub.flush()
        last = (await bus.js.stream_info(DECISIONS)).state.last_seq
        archiver = Archiver(settings)
        archiver.queue_fetch = queue_fetch
        runner = Runner(archiver, bus)
        start = time.perf_counter()
        task = asyncio.create_task(runner.run())
        while not await _acked(bus, last):
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - start
        runner.stop()
        await task
    finally:
        await bus.close()
    return n / seconds


async def _acked(bus: Bus, n: int) -> bool:
    try:
        info = await bus.js.consumer_info(DECISIONS, DURABLE)
    except Exception:  # noqa: BLE001 - consumer not created yet
        return False
    return bool(info.ack_floor and info.ack_floor.stream_seq >= n)


def _stream_backlog(root: Path, n: int, queue_fetch: bool, per_message: int = 1) -> float:
    """:func:`bench_end_to_end` on a server of its own (a fresh stream and durable)."""
    server = embedded.start(root / "nats", port=-1)
    try:
        return asyncio.run(bench_end_to_end(_settings(root, server.url), n, queue_fetch, per_message))
    finally:
        server.stop()


GROUP_BY = "SELECT action, rule, count(*) AS n FROM decisions GROUP BY ALL ORDER BY n DESC"
GROUP_BY_DAY = "SELECT date_trunc('day', time) AS day, event_type, count(*) FROM decisions GROUP BY ALL"


def bench_group_by(path: Path, rows: int) -> tuple[float, float, float]:
    """Build an archive of ``rows`` decisions (same schema), then median GROUP BY seconds."""
    con = duckdb.connect(str(path))
    for statement in core.create_statements():
        con.execute(statement)
    start = time.perf_counter()
    con.execute(
        "INSERT INTO decisions (id, time_ns, source, event_type, action, rule, message, severity, resource_kind, "
        "resource_namespace, resource_name, image_name, image_tag, container_id, pod, audit_id, count, input, "
        "details, stream_seq) SELECT 'g-' || i, 1767225600000000000 + i * 1000000, "
        "'gatekeeper', CASE WHEN i % 2 = 0 THEN 'audit_violation' ELSE 'webhook_violation' END, "
        "CASE WHEN i % 3 = 0 THEN 'deny' ELSE 'dryrun' END, 'K8sRule' || (i % 40) || '/c' || (i % 7), "
        "'message ' || (i % 1000), '', 'Deployment', 'ns-' || (i % 50), 'web-' || (i % 5000), '', '', '', '', '', 1, "
        'NULL, \'{"container":"app"}\', i FROM range(?) t(i)',
        [rows],
    )
    build = time.perf_counter() - start
    con.close()
    con = duckdb.connect(str(path))  # cold-ish: a fresh connection on the file
    timings = []
    for sql in (GROUP_BY, GROUP_BY_DAY):
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            query.run(con.cursor(), sql, 1_000_000)
            runs.append(time.perf_counter() - t)
        timings.append(statistics.median(runs))
    con.close()
    return build, timings[0], timings[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    parser.add_argument("--lines", type=int, default=0, help="intake lines (default 100k, quick 20k)")
    parser.add_argument(
        "--ingest", type=int, default=0, help="decisions through the archive sink (default 1M, quick 100k)"
    )
    parser.add_argument("--rows", type=int, default=0, help="archive size for GROUP BY (default 10M, quick 1M)")
    args = parser.parse_args()
    lines = args.lines or (20_000 if args.quick else 100_000)
    ingest = args.ingest or (100_000 if args.quick else 1_000_000)
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    e2e = 20_000 if args.quick else 50_000
    with tempfile.TemporaryDirectory(prefix="vigil-bench-decisions-") as tmp:
        root = Path(tmp)
        server = embedded.start(root / "nats", port=-1)
        try:
            settings = _settings(root / "intake", server.url)
            rate1 = asyncio.run(bench_intake(settings, lines, 1))
            print(f"intake: {lines} lines, 1 connection: {rate1:,.0f} lines/s (answered after JetStream stored each)")
            rate4 = asyncio.run(bench_intake(_settings(root / "intake4", server.url), lines, 4))
            print(f"intake: {lines} lines, 4 connections: {rate4:,.0f} lines/s")
            socket_rate = asyncio.run(bench_intake(_settings(root / "shipped", server.url), lines, 1, shipped=True))
            dir_rate = asyncio.run(bench_directory(_settings(root / "directory", server.url), lines))
            print(
                f"Gatekeeper's export as it ships, {lines} lines: socket {socket_rate:,.0f} lines/s, "
                f"disk-export directory {dir_rate:,.0f} lines/s ({dir_rate / socket_rate:.2f}x the socket)"
            )
            rate = bench_ingest(_settings(root / "ingest", server.url), ingest)
            print(
                f"archive ingest: {ingest} decisions: {rate:,.0f} decisions/s "
                f"(target >= 200,000: {rate / 200_000:.2f}x)"
            )
        finally:
            server.stop()
        old_rate = _stream_backlog(root / "e2e-nats-py", e2e, queue_fetch=False)
        e2e_rate = _stream_backlog(root / "e2e", e2e, queue_fetch=True)
        print(
            f"archiver from the stream backlog, 1 decision per message: {e2e_rate:,.0f} decisions/s "
            f"(fetch + commit + ack; with nats-py's fetch {old_rate:,.0f}/s: {e2e_rate / old_rate:.2f}x)"
        )
        batched = _stream_backlog(root / "e2e-batched", ingest, queue_fetch=True, per_message=500)
        print(
            f"archiver from the stream backlog, DecisionBatches of 500: {batched:,.0f} decisions/s "
            f"(fetch + commit + ack; target >= 200,000: {batched / 200_000:.2f}x)"
        )
        build, group_by, by_day = bench_group_by(root / "big.duckdb", rows)
        size = (root / "big.duckdb").stat().st_size / 1e6
        print(f"archive of {rows:,} decisions built in {build:.1f}s ({size:,.0f} MB)")
        print(
            f"GROUP BY action, rule over {rows:,}: {group_by * 1000:.0f} ms "
            f"(target <= 1000 ms: {group_by:.2f}x of budget)"
        )
        print(f"GROUP BY day, event_type over {rows:,}: {by_day * 1000:.0f} ms")


if __name__ == "__main__":
    main()
