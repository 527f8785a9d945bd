"""End-to-end benchmark: raw events through every service, at increasing offered rates.

Every service (profile-learner, version-evictor, anomaly-detector, throttler,
decision-log-archiver, audit-report-writer) runs as ``vigil run NAME`` in its own
process on an embedded nats-server in a temporary directory. The bench process
plays the collector: the synthetic source's behaviour (collector/sources.py)
published through collector.publisher.BatchingPublisher (batches of
``collector.batch_size``, partial batches flushed every ``batch_interval``, a
clock tick every second), paced by the wall clock.

1. The raw JetStream ceiling, measured first in the same run: nats-py
   ``publish_async`` and ``fetch`` + decode on identical 500-event payloads
   (bench.runtime.raw_ceiling).
2. Learning: every container's usual behaviour at event time ``now - 1 h``, then a
   tick past ``minimum_stable_period`` (20 s here): every profile becomes stable.
3. Phases at increasing offered rates: mostly known events (templates from the
   synthetic source, stamped with the live time) plus ``--novel`` novel execs per
   second spread over the containers (well under ``max_alert_per_sec``, so each
   must come out as one alert on ``vigil.alerts.out``).

Event time = wall clock when the event is made + ``OFFSET_NS`` (0: the learning
happened an hour of event time earlier), so latency event -> alert is the receive
time on ``vigil.alerts.out`` minus ``alert.time - OFFSET_NS``: it includes the
collector's batching delay.

A phase is *sustained* when the bench achieved >= 95 % of the offered rate, the
learner's consumer caught up within ``--grace`` seconds after the phase (every
event consumed and acked) and every novel exec produced its alert.

    .venv/bin/python -m bench.e2e [--quick] [--rates 25000,50000,...] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from nats.aio.msg import Msg

from bench import write_figures
from bench.alerts import cpu_seconds, percentile, start_service, stop_all
from bench.runtime import raw_ceiling
from collector.publisher import BatchingPublisher
from collector.sources import Synthetic, SyntheticSpec
from contracts.alerts import Alert, alert_decoder
from contracts.codec import decode_drift, encode_batch
from contracts.events import ClockTicked, EventBatch, ExecObserved, Process, RawEvent
from contracts.subjects import ALERTS_OUT, ALERTS_RAW, DECISIONS
from services.profile_learner.app import backlog
from services.registry import SERVICES
from services.runtime import embedded
from services.runtime.bus import Bus, connect, ensure_buckets
from services.runtime.partitions import owners
from services.runtime.settings import Settings, load_settings

NS = 1_000_000_000
OFFSET_NS = 0  # event time = wall clock at make + OFFSET_NS
LEARN_AGO_NS = 3600 * NS  # learning happens an hour of event time before the live phases
STABLE = "20s"
CONTAINERS = 200
IMAGES = 20
NODE = "bench"
_PERIOD = "VIGIL_RUNTIME_SECURITY_CONFIG_SECURITY_PROFILE_ANOMALY_DETECTION_"
ENV = {
    **{f"{_PERIOD}MINIMUM_STABLE_PERIOD_{t}": STABLE for t in ("EXEC", "OPEN", "DNS", "CONNECT", "SYSCALLS")},
    f"{_PERIOD}WORKLOAD_WARMUP_PERIOD": "1s",
    f"{_PERIOD}UNSTABLE_PROFILE_TIME_THRESHOLD": "24h",
}


@dataclass
class Phase:
    rate: int
    seconds: float
    offered: int = 0
    took: float = 0.0
    novel: int = 0
    first_ns: int = 0
    last_ns: int = 0
    catch_up_s: float = float("inf")
    consumed_all: bool = False
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # cores used during the phase
    rss_mb: dict[str, float] = field(default_factory=dict)
    hops: dict[str, list[float]] = field(default_factory=dict)  # event -> drift, event -> raw alert (ms)
    load: float = 0.0  # 1-minute load average at the end of the phase (the machine is shared)

    @property
    def achieved(self) -> float:
        return self.offered / self.took if self.took else 0.0

    def sustained(self, grace: float) -> bool:
        return (
            self.achieved >= 0.95 * self.rate
            and self.catch_up_s <= grace
            and self.consumed_all
            and len(self.latencies) == self.novel
        )


class Workload:
    """Known behaviour (the synthetic source's, as templates) stamped with live time, plus novel execs."""

    def __init__(self, pool: int = 100_000) -> None:
        self.synthetic = Synthetic(SyntheticSpec(containers=CONTAINERS, images=IMAGES, seed=7), clock=lambda: 0)
        self.templates = self.synthetic.make(pool)
        self.containers = self.synthetic.containers
        self.k = 0
        self.novel_made = 0

    def learning(self, first: int, n: int, t0: int) -> list[RawEvent]:
        pool = self.templates
        return [msgspec.structs.replace(pool[(first + i) % len(pool)], time=t0 + first + i) for i in range(n)]

    def known(self, n: int, now: int) -> list[RawEvent]:
        out = []
        pool = self.templates
        for i in range(n):
            out.append(msgspec.structs.replace(pool[self.k % len(pool)], time=now + i))
            self.k += 1
        return out

    def novel(self, now: int) -> ExecObserved:
        n = self.novel_made
        self.novel_made += 1
        path = f"/usr/bin/novel-{n}"
        proc = Process(
            pid=50_000 + n % 10_000, ppid=1000, comm="novel", path=path, argv=[path], ancestors=["/usr/bin/app"]
        )
        return ExecObserved(time=now, node=NODE, container=self.containers[n % len(self.containers)], process=proc)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _learner_done(bus: Bus) -> bool:
    """Every partition's learner consumer acked everything."""
    try:
        return await backlog(bus.js, bus.settings.nats.partitions) == 0
    except Exception:  # noqa: BLE001 - not created yet
        return False


async def _until(predicate, timeout: float, interval: float = 0.02) -> float:  # type: ignore[no-untyped-def]
    """Seconds until an async predicate holds (inf if it did not within ``timeout``)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if await predicate():
            return time.perf_counter() - start
        await asyncio.sleep(interval)
    return float("inf")


class Bench:
    def __init__(self, bus: Bus, settings: Settings, pids: dict[str, int]) -> None:
        self.bus, self.settings, self.pids = bus, settings, pids
        self.work = Workload()
        self.alerts: list[tuple[int, int]] = []  # (event time of the alert, receive time)
        self.seen: set[str] = set()
        self.stray: Counter[tuple[str, str, str]] = Counter()
        self.hops: dict[str, list[tuple[int, int]]] = {"drift": [], "raw": []}

    async def on_alert(self, msg: Msg) -> None:
        now = time.time_ns()
        alert = alert_decoder.decode(msg.data)
        if isinstance(alert, Alert) and alert.id not in self.seen:  # a republished message is seen twice
            self.seen.add(alert.id)
            if "/usr/bin/novel-" in alert.behaviour:
                self.alerts.append((alert.time - OFFSET_NS, now))
            else:  # known behaviour that alerted: the learning missed it (reported, not timed)
                self.stray[(alert.event_type, alert.drift_reason, alert.behaviour)] += 1

    async def on_hop(self, msg: Msg) -> None:
        """Novel execs seen on DRIFT (after the collector's batching and the learner) and on
        vigil.alerts.raw (after the anomaly-detector): where the time goes."""
        now = time.time_ns()
        if msg.subject.startswith("vigil.drift."):
            for d in decode_drift(msg.data).drifts:
                if "/usr/bin/novel-" in d.behaviour:
                    self.hops["drift"].append((d.time - OFFSET_NS, now))
        else:
            alert = alert_decoder.decode(msg.data)
            if isinstance(alert, Alert) and "/usr/bin/novel-" in alert.behaviour:
                self.hops["raw"].append((alert.time - OFFSET_NS, now))

    async def learn(self, batcher: BatchingPublisher, events: int) -> float:
        t0 = time.time_ns() + OFFSET_NS - LEARN_AGO_NS
        start = time.perf_counter()
        for i in range(0, events, 10_000):
            await batcher.add_all(self.work.learning(i, min(10_000, events - i), t0))
        await batcher.add(ClockTicked(time=t0 + 60 * NS, node=NODE))  # past minimum_stable_period
        await batcher.drain()
        await _until(lambda: _learner_done(self.bus), 300)
        return time.perf_counter() - start

    async def run_phase(self, batcher: BatchingPublisher, phase: Phase, novel_rate: float, grace: float) -> None:
        col = self.settings.collector
        cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        start = time.perf_counter()
        phase.first_ns = time.time_ns()
        made = novel = 0
        last_flush = last_tick = start
        while (elapsed := time.perf_counter() - start) < phase.seconds:
            now = time.time_ns() + OFFSET_NS
            due = int(elapsed * phase.rate) - made
            if due > 0:
                await batcher.add_all(self.work.known(due, now))
                made += due
            while novel < int(elapsed * novel_rate):
                await batcher.add(self.work.novel(now))
                novel += 1
            tnow = time.perf_counter()
            if tnow - last_flush >= float(col.batch_interval):
                await batcher.flush_batches()
                last_flush = tnow
            if tnow - last_tick >= float(col.tick_interval):
                await batcher.add(ClockTicked(time=now, node=NODE))
                last_tick = tnow
            await asyncio.sleep(0.005)
        phase.took = time.perf_counter() - start
        phase.last_ns = time.time_ns()
        await batcher.drain()
        phase.offered, phase.novel = made + novel, novel
        phase.cpu = {n: (cpu_seconds(pid) - cpu0[n]) / phase.took for n, pid in self.pids.items()}
        phase.rss_mb = {n: rss_mb(pid) for n, pid in self.pids.items()}
        phase.load = os.getloadavg()[0]
        phase.catch_up_s = await _until(lambda: _learner_done(self.bus), grace)
        if phase.catch_up_s == float("inf"):
            await _until(lambda: _learner_done(self.bus), 120)  # let the backlog drain before judging the alerts
        phase.consumed_all = await _learner_done(self.bus)

        def mine() -> list[float]:
            return [(rx - t) / 1e6 for t, rx in self.alerts if phase.first_ns <= t <= phase.last_ns]

        async def all_alerts() -> bool:
            return len(mine()) >= phase.novel

        await _until(all_alerts, 30, 0.05)
        phase.latencies = mine()
        for hop, seen in self.hops.items():
            phase.hops[hop] = [(rx - t) / 1e6 for t, rx in seen if phase.first_ns <= t <= phase.last_ns]


async def measure(
    settings: Settings,
    pids: dict[str, int],
    rates: list[int],
    seconds: float,
    learn: int,
    novel_rate: float,
    grace: float,
    learners: int = 1,
) -> tuple[float, list[Phase]]:
    bus = await connect(settings, start_embedded=False, name="bench-e2e")
    await bus.ensure_streams()
    await ensure_buckets(bus)
    split = min(learners, settings.nats.partitions)

    async def learners_split() -> bool:  # every learner instance owns its share before the load starts
        owned = await owners(bus, "profile-learner", settings.nats.partitions)
        return len(owned) == settings.nats.partitions and len(set(owned.values())) == split

    took = await _until(learners_split, 60, 0.1)
    print(
        f"  {learners} learner instance(s) own the {settings.nats.partitions} partitions after {took:.1f}s", flush=True
    )
    bench = Bench(bus, settings, pids)
    await bus.nc.subscribe(ALERTS_OUT, cb=bench.on_alert)
    await bus.nc.subscribe("vigil.drift.*", cb=bench.on_hop)
    await bus.nc.subscribe(ALERTS_RAW, cb=bench.on_hop)
    phases: list[Phase] = []
    async with bus.publisher() as pub:
        batcher = BatchingPublisher(pub, NODE, "e2e", settings.nats.partitions, settings.collector.batch_size)
        learn_s = await bench.learn(batcher, learn)
        warm = Phase(rate=5_000, seconds=2.0)  # the services' consumers and caches warm up
        await bench.run_phase(batcher, warm, novel_rate, grace=30)
        for rate in rates:
            phase = Phase(rate=rate, seconds=seconds)
            await bench.run_phase(batcher, phase, novel_rate, grace)
            phases.append(phase)
            print(_phase_line(phase, grace), flush=True)
            if not phase.sustained(grace):
                break
            await asyncio.sleep(1.0)
        stray = sum(bench.stray.values())
        if stray:
            print(f"  alerts on behaviour that is not novel: {bench.stray.most_common(5)}")
    decisions = (await bus.js.stream_info(DECISIONS)).state.messages
    await bus.close()
    print(
        f"  learning: {learn:,} events learned in {learn_s:.1f}s; alerts not from a novel exec: {stray}; "
        f"decisions stored: {decisions:,}"
    )
    return learn_s, phases


def _phase_line(p: Phase, grace: float) -> str:
    ok = "sustained" if p.sustained(grace) else "NOT sustained"
    catch = f"{p.catch_up_s:.2f}s" if p.catch_up_s != float("inf") else f">{grace:.0f}s"
    return (
        f"  {p.rate:>8,} ev/s offered: achieved {p.achieved:>9,.0f}, learner caught up {catch:>6}, "
        f"alerts {len(p.latencies)}/{p.novel}, p50 {percentile(p.latencies, 0.5):6.1f} ms, "
        f"p99 {percentile(p.latencies, 0.99):6.1f} ms  -> {ok}\n"
        f"{'':>12}CPU used by the pipeline {sum(p.cpu.values()):.2f} of {os.cpu_count()} cores, load avg {p.load:.1f}; "
        f"p50/p99 event -> DRIFT (collector batching + learner) {_p50_p99(p.hops.get('drift', []))}, "
        f"-> alerts.raw (+ detector) {_p50_p99(p.hops.get('raw', []))}"
    )


def _p50_p99(values: list[float]) -> str:
    return f"{percentile(values, 0.5):.1f}/{percentile(values, 0.99):.1f} ms"


def raw_payloads(n: int, per_msg: int) -> list[bytes]:
    events = Synthetic(SyntheticSpec(containers=CONTAINERS, images=IMAGES, seed=7), clock=lambda: 0).make(n)
    return [
        encode_batch(EventBatch(node="raw", boot="raw", first_seq=i, events=events[i : i + per_msg]))
        for i in range(0, n, per_msg)
    ]


def start_all(
    settings: Settings,
    tmp: Path,
    server: embedded.EmbeddedServer,
    learners: int = 1,
    profile: Path | None = None,
) -> tuple[list[subprocess.Popen[bytes]], dict[str, int]]:
    """Every service once, the profile-learner ``learners`` times (they split the partitions);
    with ``profile`` each under cProfile, writing ``profile/<service>.prof``."""
    names = [*SERVICES, *(f"profile-learner#{i}" for i in range(2, learners + 1))]
    procs = [  # (an extra learner is not profiled: its file would overwrite the first one's)
        start_service(
            name.split("#")[0], settings, tmp / f"{name.replace('#', '-')}.log", None if "#" in name else profile
        )
        for name in names
    ]
    pids = {name: p.pid for name, p in zip(names, procs, strict=True)}
    pids["nats-server"] = server.process.pid
    pids["bench (collector)"] = os.getpid()
    return procs, pids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s phases, 25k/50k/100k/200k/300k, a shorter learning")
    parser.add_argument("--rates", default="25000,50000,100000,200000,300000,400000")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per phase")
    parser.add_argument("--novel", type=float, default=100.0, help="novel execs per second (each one alert)")
    parser.add_argument("--grace", type=float, default=2.0, help="seconds the learner may take to catch up")
    parser.add_argument("--learn", type=int, default=200_000, help="events in the learning phase")
    parser.add_argument("--learners", type=int, default=1, help="profile-learner instances (they split the partitions)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file (bench.compare reads it)")
    parser.add_argument("--profile", type=Path, help="run the services under cProfile, writing DIR/<service>.prof")
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    seconds, learn, ceiling_n = args.seconds, args.learn, 500_000
    if args.quick:
        rates, seconds, learn, ceiling_n = [r for r in rates if r <= 300_000], 2.0, 100_000, 200_000
    os.environ.update(ENV)  # inherited by the `vigil run` processes
    with tempfile.TemporaryDirectory(prefix="vigil-bench-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        server = embedded.start(tmp / "nats", port=-1)
        try:
            raw_pub, raw_con = asyncio.run(raw_ceiling(server.url, raw_payloads(ceiling_n, 500), 500))
            settings = load_settings(
                env={**os.environ, "VIGIL_DATA_DIR": str(tmp / "vigil"), "VIGIL_NATS_URL": server.url}
            )
            procs, pids = start_all(settings, tmp, server, args.learners, args.profile)
            try:
                print(
                    f"bench.e2e: {len(SERVICES)} services ({args.learners} learner instance(s)) + nats-server + "
                    f"this collector on {os.cpu_count()} cores; "
                    f"{settings.nats.partitions} partitions, {settings.collector.batch_size} events/batch, "
                    f"flush every {float(settings.collector.batch_interval) * 1000:.0f} ms, "
                    f"{args.novel:.0f} novel execs/s"
                )
                print(
                    f"  raw JetStream ceiling (nats-py, 500 ev/msg): publish {raw_pub:,.0f} ev/s, "
                    f"fetch+decode {raw_con:,.0f} ev/s"
                )
                _, phases = asyncio.run(
                    measure(settings, pids, rates, seconds, learn, args.novel, args.grace, args.learners)
                )
            finally:
                stop_all(procs)
        finally:
            server.stop()
    report(phases, args.grace, raw_pub, raw_con)
    write_figures(args.json, figures(phases, args.grace, raw_con))


def figures(phases: list[Phase], grace: float, raw_con: float) -> dict[str, float]:
    """The issue's figures: the highest sustained rate, the latency event -> alert and
    the rate achieved at each offered rate (near the limit the latency is the backlog:
    a figure that moves where "sustained" only flips), and at 50k ev/s each service's CPU."""
    best = max((p for p in phases if p.sustained(grace)), key=lambda p: p.rate, default=None)
    out = {
        "sustained_ev_s": best.achieved if best else 0.0,
        "sustained_of_raw": best.achieved / raw_con if best else 0.0,
    }
    for p in phases:
        k = f"{p.rate // 1000}k"
        out |= {f"p50_ms_at_{k}": percentile(p.latencies, 0.5), f"p99_ms_at_{k}": percentile(p.latencies, 0.99)}
        out[f"achieved_ev_s_at_{k}"] = p.achieved
        if p.rate == 50_000:
            out |= {f"cpu_at_50k_{name}": cores for name, cores in p.cpu.items()}
    return out


def report(phases: list[Phase], grace: float, raw_pub: float, raw_con: float) -> None:
    ok = [p for p in phases if p.sustained(grace)]
    best = max(ok, key=lambda p: p.rate, default=None)
    if best is None:
        print("  highest sustained rate with no loss: none of the offered rates")
    else:
        print(
            f"  highest sustained rate with no loss: {best.rate:,} ev/s offered ({best.achieved:,.0f} achieved); "
            f"{best.achieved / raw_con:.2f} of the raw fetch+decode ceiling, "
            f"{best.achieved / raw_pub:.2f} of raw publish"
            f"  (target >= 300,000: {best.achieved / 300_000:.2f}x)"
        )
    at50 = next((p for p in phases if p.rate == 50_000), None)
    if at50 is not None:
        print(
            f"  latency event -> alert at 50k ev/s: p50 {percentile(at50.latencies, 0.5):.1f} ms, "
            f"p99 {percentile(at50.latencies, 0.99):.1f} ms (target <= 100 ms)"
        )
    shown = best or (phases[0] if phases else None)
    for p in [shown, *([phases[-1]] if phases and phases[-1] is not shown else [])]:
        if p is None:
            continue
        print(f"  per process at {p.rate:,} ev/s offered (CPU cores used, RSS at the end of the phase):")
        for name in p.cpu:
            print(f"    {name:<24}{p.cpu[name]:>6.2f} cores {p.rss_mb[name]:>8.0f} MB")


if __name__ == "__main__":
    main()
