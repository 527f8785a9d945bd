"""Latency drift → output alert through a real nats-server with the
anomaly-detector and the throttler running (each `vigil run` in its own process).

The bench offers ``--rate`` drift events per second (default 50k) as DriftBatch
messages of ``--batch`` drifts on one DRIFT partition per image, paced by the
wall clock. Event time is the wall clock at offer (``Drift.time`` = the batch's
publish time), so the latency of an alert is ``receive time on vigil.alerts.out
- alert.time``. ``--novel`` is the fraction of drifts that are new behaviours
(each one an alert); the rest repeat a small set per container and are folded
by deduplication, as drift floods are in practice. Containers stay under
``max_alert_per_sec`` unless ``--novel`` is raised, so every novel drift should
come out.

    .venv/bin/python -m bench.alerts [--quick] [--rate 50000] [--novel 0.01] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.aio.msg import Msg

from bench import write_figures
from contracts.alerts import Alert, alert_decoder
from contracts.codec import encode_batch
from contracts.events import Container, ExecObserved, Process
from contracts.profiles import Drift, DriftBatch
from contracts.subjects import ALERTS_OUT, ALERTS_RAW, DECISIONS, drift_subject, partition_of
from services.runtime import embedded
from services.runtime.bus import Bus, connect, ensure_buckets
from services.runtime.settings import Settings, load_settings

CONTAINERS = 200
IMAGES = 20
REPEATS = 20  # distinct repeated behaviours per container


def containers(partitions: int) -> list[Container]:
    """CONTAINERS containers over IMAGES images spread evenly over the DRIFT partitions."""
    per_part = max(1, IMAGES // partitions)
    images: list[str] = []
    for part in range(partitions):
        names = (f"img{j}" for j in range(10_000) if partition_of(f"img{j}", partitions) == part)
        images += [next(names) for _ in range(per_part)]
    return [
        Container(id=f"c{i}", image_name=images[i % len(images)], image_tag="1", pod=f"pod-{i}", namespace="bench")
        for i in range(CONTAINERS)
    ]


def drift(n: int, t: int, container: Container, path: str) -> Drift:
    proc = Process(pid=1000 + n % 30000, ppid=1, path=path, ancestors=["/usr/bin/containerd-shim", "/bin/app"])
    return Drift(
        id=f"bench:{n}",
        time=t,
        image_name=container.image_name,
        image_tag=container.image_tag,
        event_type="exec",
        behaviour=path,
        version_state="stable",
        reason="stable_version",
        inserted=False,
        container=container,
        event=ExecObserved(time=t, node="bench", container=container, process=proc),
    )


class Offer:
    """Builds paced batches; every ``1/novel``-th drift is a new behaviour."""

    def __init__(self, novel: float, partitions: int) -> None:
        self.pool = containers(partitions)
        self.every = max(1, round(1 / novel)) if novel > 0 else 0
        self.partitions = partitions
        self.n = 0
        self.novel_sent = 0

    def batch(self, size: int, t: int, part: int) -> DriftBatch:
        drifts = []
        mine = [c for c in self.pool if partition_of(c.image_name, self.partitions) == part]
        for _ in range(size):
            if self.every and self.n % self.every == 0:
                c, path = mine[self.novel_sent % len(mine)], f"/tmp/novel-{self.n}"
                self.novel_sent += 1
            else:
                c, path = mine[self.n % len(mine)], f"/usr/bin/repeat-{self.n % REPEATS}"
            drifts.append(drift(self.n, t, c, path))
            self.n += 1
        return DriftBatch(drifts=drifts, watermark=t)


async def offer(bus: Bus, gen: Offer, rate: int, size: int, seconds: float) -> tuple[int, float]:
    """Publish ``rate`` drifts/s for ``seconds``; returns (drifts, achieved seconds)."""
    per_sec = rate / size
    start = time.perf_counter()
    sent = 0
    async with bus.publisher() as pub:
        k = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * per_sec) + 1
            while k < due:
                part = k % gen.partitions
                data = encode_batch(gen.batch(size, time.time_ns(), part))
                await pub.publish(drift_subject(part), data, f"bench-drift:{gen.n}")
                k += 1
                sent += size
            if k % 50 == 0:
                await pub.flush()
            await asyncio.sleep(max(0.0, (k / per_sec) - (time.perf_counter() - start)))
        await pub.flush()
    return sent, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    settings: Settings, rate: int, size: int, seconds: float, novel: float, pids: dict[str, int]
) -> dict[str, float]:
    bus = await connect(settings, start_embedded=False, name="bench-alerts")
    await bus.ensure_streams()
    await ensure_buckets(bus)
    latencies: list[float] = []
    raw: list[float] = []

    received: dict[str, dict[str, int]] = {ALERTS_OUT: {}, ALERTS_RAW: {}}  # alert id -> receive time, per subject

    def recorder(into: list[float], seen: dict[str, int]) -> Callable[[Msg], Awaitable[None]]:
        # (a plain subscriber also sees a republished, stored-once message: first sight counts)
        async def on_alert(msg: Msg) -> None:
            now = time.time_ns()
            alert = alert_decoder.decode(msg.data)
            if isinstance(alert, Alert) and alert.id not in seen:
                seen[alert.id] = now
                into.append((now - alert.time) / 1e6)

        return on_alert

    await bus.nc.subscribe(ALERTS_OUT, cb=recorder(latencies, received[ALERTS_OUT]))
    await bus.nc.subscribe(ALERTS_RAW, cb=recorder(raw, received[ALERTS_RAW]))
    gen = Offer(novel, settings.nats.partitions)
    # warm up: the services connect and create their consumers
    await offer(bus, gen, 1000, size, 2.0)
    await _settle(latencies, gen.novel_sent, 30)
    latencies.clear()
    raw.clear()
    for seen in received.values():
        seen.clear()
    before = gen.novel_sent
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    sent, took = await offer(bus, gen, rate, size, seconds)
    cpu = {f"cpu_{name}": (cpu_seconds(pid) - cpu0[name]) / took for name, pid in pids.items()}
    expected = gen.novel_sent - before
    await _settle(latencies, expected, 60)
    decisions = (await bus.js.stream_info(DECISIONS)).state.messages
    raw_at = received[ALERTS_RAW]
    hop = [(t - raw_at[i]) / 1e6 for i, t in received[ALERTS_OUT].items() if i in raw_at]
    await bus.close()
    return {
        "offered_ev_s": sent / took,
        "alerts_expected": expected,
        "alerts_received": len(latencies),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "raw_received": len(raw),
        "raw_p50_ms": percentile(raw, 0.50),
        "raw_p99_ms": percentile(raw, 0.99),
        "hop_p50_ms": percentile(hop, 0.50),  # the throttler's hop: raw alert seen -> out alert seen
        "hop_p99_ms": percentile(hop, 0.99),
        "decisions_stored": decisions,
        "load_avg_1m": os.getloadavg()[0],
        **cpu,
    }


async def _settle(latencies: list[float], expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(latencies) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def start_service(name: str, settings: Settings, log: Path, profile: Path | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VIGIL_DATA_DIR": settings.data_dir, "VIGIL_NATS_URL": settings.nats.url}
    out = open(log, "ab")  # noqa: SIM115 - closed when the process is reaped
    prof = ["-m", "cProfile", "-o", str(profile / f"{name}.prof")] if profile else []
    cmd = [sys.executable, *prof, "-m", "services.cli.main", "run", name]
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=out)


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """SIGTERM every service, then wait for each (killed if it does not stop in time)."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s of load instead of 10")
    parser.add_argument("--rate", type=int, default=50_000, help="offered drift events per second")
    parser.add_argument("--batch", type=int, default=100, help="drifts per DriftBatch message")
    parser.add_argument("--novel", type=float, default=0.01, help="fraction of drifts that are new behaviours")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile", type=Path, help="run the services under cProfile, writing DIR/<service>.prof")
    parser.add_argument("--json", type=Path, help="also write the figures to this file (bench.compare reads it)")
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="vigil-bench-alerts-") as tmp:
        server = embedded.start(Path(tmp) / "nats", port=-1)
        settings = load_settings(env={"VIGIL_DATA_DIR": str(Path(tmp) / "vigil"), "VIGIL_NATS_URL": server.url})
        procs = [
            start_service(name, settings, Path(tmp) / f"{name}.log", args.profile)
            for name in ("anomaly-detector", "throttler")
        ]
        try:
            pids = {"anomaly-detector": procs[0].pid, "throttler": procs[1].pid, "nats-server": server.process.pid}
            pids["bench"] = os.getpid()
            result = asyncio.run(measure(settings, args.rate, args.batch, seconds, args.novel, pids))
        finally:
            stop_all(procs, timeout=10)
            server.stop()
    report(result, args.rate, args.novel, seconds)
    write_figures(args.json, result)


def report(r: dict[str, float], rate: int, novel: float, seconds: float) -> None:
    print(f"bench.alerts: {seconds:.0f}s at {rate} drift ev/s offered, {novel:.1%} novel; detector+throttler+nats")
    print(f"  offered            {r['offered_ev_s']:>10,.0f} ev/s  ({r['offered_ev_s'] / rate:.2f} of target)")
    print(f"  alerts out         {r['alerts_received']:>10,.0f} / {r['alerts_expected']:,.0f} expected")
    print(f"  latency p50        {r['p50_ms']:>10.1f} ms")
    print(f"  latency p99        {r['p99_ms']:>10.1f} ms  (target <= 100 ms: {r['p99_ms'] / 100:.2f}x)")
    print(f"  latency max        {r['max_ms']:>10.1f} ms")
    print(f"  drift → raw alert  p50 {r['raw_p50_ms']:.1f} ms, p99 {r['raw_p99_ms']:.1f} ms (anomaly-detector alone)")
    print(f"  raw → out alert    p50 {r['hop_p50_ms']:.1f} ms, p99 {r['hop_p99_ms']:.1f} ms (the throttler's hop)")
    print(f"  raw alerts         {r['raw_received']:>10,.0f}")
    print(f"  decisions stored   {r['decisions_stored']:>10,.0f}")
    cpu = ", ".join(f"{k[4:]} {v:.2f}" for k, v in r.items() if k.startswith("cpu_"))
    print(f"  CPU cores used     {cpu}  (machine: {os.cpu_count()} cores, load avg {r['load_avg_1m']:.1f})")


if __name__ == "__main__":
    main()
