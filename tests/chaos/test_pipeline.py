"""The whole pipeline under chaos gives exactly the outputs of a quiet single-node run.

One trace (learning, a tick past the stable period, steady known behaviour,
novel execs, a repeat that is deduplicated, a burst that is throttled, a new
image version learning while another is stable, Gatekeeper decisions on
``vigil.decisions.intake``) goes through profile-learner, version-evictor,
anomaly-detector, throttler and decision-log-archiver, each ``vigil run`` in its
own process, twice:

(a) reference: one embedded nats-server, no faults;
(b) a 3-node JetStream cluster with R3 streams while a NATS node is killed and
    restarted (twice, different nodes), the learner and the archiver are
    SIGKILLed and restarted, and the archiver restarts onto a broken archive
    directory for a while (swapped for a regular file, so it fails for root too,
    as in tests/integration/test_decision_exactly_once.py).

Every stream the pipeline writes (PROFILES, DRIFT, ALERTS, DECISIONS) and every
row of the DuckDB archive are compared with the reference: the same messages
(subject, Nats-Msg-Id, payload bytes), none lost, none stored twice. Only the
stream sequences (message order across subjects and the archive's
``stream_seq`` column) may differ.

The raw trace is stored before the faults begin, so this is the services'
exactly-once under failures, not the collector's: a publisher that keeps
publishing while its node dies can hit nats-py's reconnect buffer limit
(``OutboundBufferLimitError``), which the collector does not handle yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from collector.publisher import BatchingPublisher
from contracts.events import (
    ClockTicked,
    ConnectObserved,
    Container,
    DnsQueried,
    DnsQuery,
    ExecObserved,
    FileAccess,
    FileOpened,
    NetConnect,
    Process,
    RawEvent,
    SyscallsObserved,
)
from contracts.subjects import ALERTS, DECISIONS, DRIFT, EVENTS, INTAKE_DECISIONS, PROFILES, STREAMS
from services.decision_intake.client import gatekeeper_line
from services.decision_log_archiver.app import DURABLE as ARCHIVER
from services.decision_log_archiver.core import COLUMNS
from services.profile_learner.app import backlog, partition_consumers
from services.runtime import embedded
from services.runtime.bus import Bus
from services.runtime.partitions import owners
from services.runtime.settings import Settings
from tests.integration.test_decision_exactly_once import _counter
from tests.support import make_settings, open_bus, read_stream, vigil_process, wait_for

NS = 1_000_000_000
MS = NS // 1000
T0 = 1_767_225_600 * NS
SERVICES = ("profile-learner", "version-evictor", "anomaly-detector", "throttler", "decision-log-archiver")
SECOND_LEARNER = "profile-learner#2"  # the chaos run scales the learner out to two instances
CONSUMERS = {  # every durable of the pipeline: done when all are drained
    *((spec.stream, spec.durable) for p in range(4) for spec in partition_consumers(p)),
    (PROFILES, "version-evictor"),
    (DRIFT, "anomaly-detector"),
    (ALERTS, "throttler"),
    (DECISIONS, ARCHIVER),
}
OUTPUT_STREAMS = (PROFILES, DRIFT, ALERTS, DECISIONS)
GATEKEEPER_DECISIONS = 3000
ANCESTORS = ["/usr/bin/containerd-shim", "/bin/app"]
IMAGES = ("web", "db", "cache", "api")
_PERIOD = "RUNTIME_SECURITY_CONFIG_SECURITY_PROFILE_ANOMALY_DETECTION_"
ENV = {
    **{f"{_PERIOD}MINIMUM_STABLE_PERIOD_{t.upper()}": "20s" for t in ("exec", "open", "dns", "connect", "syscalls")},
    f"{_PERIOD}WORKLOAD_WARMUP_PERIOD": "1s",
    "RUNTIME_SECURITY_CONFIG_SECURITY_PROFILE_SNAPSHOT_INTERVAL": "1s",
    "ANOMALY_DETECTOR_SNAPSHOT_INTERVAL": "1s",
    "MAX_ALERT_PER_SEC": "5",
    "THROTTLE_SEC": "30",
    "NATS_ACK_WAIT": "2s",
    "NATS_FETCH_BATCH": "8",
    "ARCHIVE_RETRY_MAX": "0.5s",
    "TELEMETRY_HEARTBEAT_INTERVAL": "0.3s",
}


# --- the trace -------------------------------------------------------------------------


def _containers() -> list[Container]:
    return [
        Container(id=f"{image}-{i}", image_name=image, image_tag="1", pod=f"{image}-{i}", namespace="prod")
        for image in IMAGES
        for i in range(2)
    ]


def _known(c: Container, n: int, t: int) -> RawEvent:
    """The n-th of the workload's usual behaviours (a small cycle per kind)."""
    app = Process(pid=100 + n % 7, ppid=1, comm="app", path="/bin/app", ancestors=ANCESTORS[:1])
    kind = n % 10
    if kind == 0:
        tool = f"/usr/bin/tool{n % 6}"
        return ExecObserved(time=t, node="n1", container=c, process=_proc(tool, n))
    if kind == 1:
        return DnsQueried(time=t, node="n1", container=c, process=app, dns=DnsQuery(name=f"svc{n % 5}.example.com"))
    if kind == 2:
        return ConnectObserved(time=t, node="n1", container=c, process=app, net=NetConnect(addr="10.0.0.7", port=5432))
    if kind == 3:
        return SyscallsObserved(time=t, node="n1", container=c, process=app, syscalls=["read", "write", "openat"])
    return FileOpened(time=t, node="n1", container=c, process=app, file=FileAccess(path=f"/data/f{n % 21}", flags=0))


def _proc(path: str, n: int) -> Process:
    return Process(
        pid=2000 + n % 500, ppid=100, comm=path.rsplit("/", 1)[-1], path=path, argv=[path], ancestors=ANCESTORS
    )


def _exec(c: Container, path: str, t: int, n: int) -> ExecObserved:
    return ExecObserved(time=t, node="n1", container=c, process=_proc(path, n))


def _steady(cs: list[Container], start: int, count: int, step: int) -> list[RawEvent]:
    return [_known(cs[n % len(cs)], n // len(cs), start + n * step) for n in range(count)]


def trace() -> list[RawEvent]:
    """Event time only (T0-based): the outcome does not depend on the wall clock."""
    cs = _containers()
    web0, cache0 = cs[0], cs[4]
    web_v2 = Container(id="web-9", image_name="web", image_tag="2", pod="web-9", namespace="prod")
    s = NS
    events: list[RawEvent] = [*_steady(cs, T0, 16_000, 500_000)]  # learning, 8 s
    events.append(ClockTicked(time=T0 + 40 * s, node="n1"))  # past minimum_stable_period: stable
    events += _steady(cs, T0 + 41 * s, 16_000, 500_000)  # known behaviour only: no drift
    events += [_exec(c, f"/tmp/novel-{c.id}-{k}", T0 + 50 * s + k * 300 * MS, k) for c in cs for k in range(2)]
    events.append(_exec(web0, f"/tmp/novel-{web0.id}-0", T0 + 51 * s, 9))  # a repeat: deduplicated
    events += [_exec(cache0, f"/tmp/burst-{k}", T0 + 52 * s + k * 30 * MS, k) for k in range(15)]  # throttled
    events += _steady(cs, T0 + 53 * s, 8_000, 500_000)
    events += [_known(web_v2, n, T0 + 60 * s + n * MS) for n in range(200)]  # a new version: warm-up
    events.append(_exec(web_v2, "/usr/bin/debug-shell", T0 + 62 * s, 1))  # learning while tag 1 is stable
    events += _steady(cs, T0 + 63 * s, 8_000, 500_000)
    events += [ClockTicked(time=T0 + k * s, node="n1") for k in (130, 200)]  # close dedup and throttle windows
    return events


async def publish_inputs(settings: Settings, decisions: range = range(GATEKEEPER_DECISIONS)) -> None:
    """The trace on EVENTS as the collector batches it, then some Gatekeeper decisions."""
    bus = await open_bus(settings)
    try:
        async with bus.publisher() as pub:
            batcher = BatchingPublisher(pub, "n1", "boot-1", settings.nats.partitions, batch_size=25)
            await batcher.add_all(trace())
            await batcher.drain()
        await publish_decisions(bus, decisions)
    finally:
        await bus.close()


async def publish_decisions(bus: Bus, which: range) -> None:
    async with bus.publisher() as pub:
        for i in which:
            await pub.publish(INTAKE_DECISIONS, gatekeeper_line(i), f"gk-{i}")
        await pub.flush()


# --- running the pipeline ---------------------------------------------------------------


class Pipeline:
    """Every service as a killable `vigil run` subprocess, supervised as `vigil up` and Kubernetes do.

    The supervisor restarts an instance that exited by itself: a service started while the
    cluster elects leaders can fail a start-up JetStream call that is not retried and exit; that
    is a restart, not a loss, and the outputs must still match."""

    def __init__(self, settings: Settings, logs: Path, stack: contextlib.ExitStack) -> None:
        self.settings, self.logs, self.stack = settings, logs, stack
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.exits: Counter[str] = Counter()
        logs.mkdir(parents=True, exist_ok=True)

    async def supervise(self) -> None:
        while True:
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    self.exits[name] += 1
                    self.start(name)
            await asyncio.sleep(0.2)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """``name`` is a service, or ``service#N`` for its N-th instance."""
        log = self.logs / f"{name.replace('#', '-')}.log"
        proc = self.stack.enter_context(vigil_process(self.settings, "run", name.split("#")[0], log=log))
        self.procs[name] = proc
        return proc

    def sigkill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self, supervisor: asyncio.Task[None]) -> None:
        supervisor.cancel()
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            proc.wait(30)


async def _learner_acked(bus: Bus) -> int:
    """EVENTS messages the learner instances acked so far (all partitions)."""
    try:
        total = (await bus.js.stream_info(EVENTS)).state.messages
        return total - await backlog(bus.js, 4)
    except Exception:  # noqa: BLE001 - a node is down: no progress known
        return 0


async def _replicas_current(bus: Bus) -> bool:
    """Every stream and consumer of the pipeline has a leader and all its replicas caught up.

    Killing a second node before the restarted one caught up leaves a raft group without
    quorum until a node returns: that is an outage by design, not a fault the pipeline hides."""
    try:
        infos = [await bus.js.stream_info(s.name) for s in STREAMS]
        infos += [await bus.js.consumer_info(stream, durable) for stream, durable in CONSUMERS]
    except Exception:  # noqa: BLE001 - no leader yet
        return False
    return all(
        i.cluster is not None
        and i.cluster.leader
        and all(p.current and not p.offline for p in i.cluster.replicas or [])
        for i in infos
    )


async def _drained(bus: Bus) -> bool:
    """Every durable of the pipeline has acked everything in its stream."""
    for stream, durable in CONSUMERS:
        try:
            info = await bus.js.consumer_info(stream, durable)
        except Exception:  # noqa: BLE001 - not created yet, or a node is down
            return False
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def _last_seqs(bus: Bus) -> dict[str, int] | None:
    try:
        return {s.name: (await bus.js.stream_info(s.name)).state.last_seq for s in STREAMS}
    except Exception:  # noqa: BLE001 - a node is down
        return None


async def _settled(bus: Bus) -> bool:
    """Every durable drained, and no stream grew while that was checked: nothing is in
    flight between two services either. (A service stores its outputs before it acks
    their input, so an output stored before the first look shows as pending, or as
    consumed, when its consumer is looked at; one stored later moves a stream's end.)"""
    before = await _last_seqs(bus)
    if before is None or not await _drained(bus):
        return False
    return await _last_seqs(bus) == before


async def outputs(bus: Bus) -> dict[str, Counter[tuple[str, str, bytes]]]:
    out = {}
    for stream in OUTPUT_STREAMS:
        msgs = await read_stream(bus, stream)
        out[stream] = Counter((m.subject, (m.headers or {}).get("Nats-Msg-Id", ""), m.data) for m in msgs)
    return out


def archive_rows(settings: Settings) -> list[tuple[Any, ...]]:
    """Every archived decision, without the stream sequence it was written from."""
    cols = ", ".join(name for name, _ in COLUMNS if name != "stream_seq")
    con = duckdb.connect(str(Path(settings.archive.path)), read_only=True)
    try:
        return con.execute(f"SELECT {cols} FROM decisions ORDER BY id").fetchall()
    finally:
        con.close()


async def reference_run(settings: Settings, logs: Path) -> dict[str, Counter[tuple[str, str, bytes]]]:
    await publish_inputs(settings)
    bus = await open_bus(settings)
    try:
        with contextlib.ExitStack() as stack:
            pipeline = Pipeline(settings, logs, stack)
            for name in SERVICES:
                pipeline.start(name)
            supervisor = asyncio.create_task(pipeline.supervise())
            await wait_for(lambda: _settled(bus), timeout=90, interval=0.3)
            pipeline.stop_all(supervisor)
        return await outputs(bus)
    finally:
        await bus.close()


async def chaos_run(
    settings: Settings, cluster: embedded.Cluster, logs: Path
) -> tuple[list[str], dict[str, Counter[tuple[str, str, bytes]]]]:
    half = GATEKEEPER_DECISIONS // 2
    archive_dir = Path(settings.archive.path).parent
    bus = await open_bus(settings)
    actions: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            pipeline = Pipeline(settings, logs, stack)
            for name in (*SERVICES, SECOND_LEARNER):
                pipeline.start(name)
            supervisor = asyncio.create_task(pipeline.supervise())

            async def learner_past(n: int) -> bool:
                return await _learner_acked(bus) >= n

            await wait_for(Path(settings.archive.path).exists, timeout=60)  # the archiver opened its sink
            await wait_for(lambda: _two_learners_own_partitions(bus), timeout=60, interval=0.1)
            actions.append("two learner instances share the partitions")
            # the learners are split before the first event; a third of the trace first (full
            # batches only: the same batches as the reference), the rest after the kill, so the
            # killed learner is surely mid-stream
            events = trace()
            pub = await bus.publisher().start()
            batcher = BatchingPublisher(pub, "n1", "boot-1", settings.nats.partitions, batch_size=25)
            await batcher.add_all(events[: len(events) // 3])
            await pub.flush()
            await publish_decisions(bus, range(half))
            first_part = await _last_seq(settings, EVENTS)
            await wait_for(lambda: learner_past(first_part // 4), timeout=60, interval=0.02)
            cluster.kill(1)
            actions.append("killed nats node n1")
            pipeline.sigkill("profile-learner")
            actions.append("SIGKILLed a profile-learner mid-stream")
            pipeline.sigkill("decision-log-archiver")
            await _ready(settings)  # fewer start-up exits (see Pipeline)
            os.rename(archive_dir, archive_dir.with_name("archive.away"))
            archive_dir.write_text("not a directory: the sink fails for root too\n")
            pipeline.start("decision-log-archiver")
            actions.append("SIGKILLed the archiver, restarted it onto a broken archive")
            pipeline.start("profile-learner")
            await batcher.add_all(events[len(events) // 3 :])  # the rest of the trace, while n1 is down
            await batcher.drain()
            await pub.close()
            total_events = await _last_seq(settings, EVENTS)
            await publish_decisions(bus, range(half, GATEKEEPER_DECISIONS))
            await wait_for(lambda: _sink_failing(bus, pipeline.pid(ARCHIVER)), timeout=60, interval=0.2)
            cluster.start_node(1)
            actions.append("restarted n1")
            archive_dir.unlink()
            os.rename(archive_dir.with_name("archive.away"), archive_dir)
            actions.append("repaired the archive")
            await wait_for(lambda: _replicas_current(bus), timeout=60, interval=0.2)  # then lose another node
            await wait_for(lambda: learner_past(total_events // 2), timeout=60, interval=0.02)
            cluster.kill(0)
            actions.append("killed nats node n0")
            pipeline.sigkill("decision-log-archiver")
            await _ready(settings)
            pipeline.start("decision-log-archiver")
            actions.append("SIGKILLed the archiver again")
            await wait_for(lambda: learner_past(total_events * 3 // 4), timeout=90, interval=0.05)
            cluster.start_node(0)
            actions.append("restarted n0")
            await wait_for(lambda: _settled(bus), timeout=120, interval=0.3)
            pipeline.stop_all(supervisor)
        return actions, await outputs(bus)
    finally:
        await bus.close()


async def _two_learners_own_partitions(bus: Bus) -> bool:
    try:
        owned = await owners(bus, "profile-learner", 4)
    except Exception:  # noqa: BLE001 - a node is down: ask again
        return False
    return len(owned) == 4 and len(set(owned.values())) == 2


async def _sink_failing(bus: Bus, pid: int) -> bool:
    try:
        return await _counter(bus, ARCHIVER, pid, "sink_failures") >= 2
    except Exception:  # noqa: BLE001 - a node is down: ask again
        return False


async def _ready(settings: Settings) -> None:
    """Until the cluster has a meta leader and the R3 streams exist."""

    async def attempt() -> bool:
        try:
            bus = await open_bus(settings)
        except Exception:  # noqa: BLE001 - no meta leader yet
            return False
        await bus.close()
        return True

    await wait_for(attempt, timeout=30, interval=0.2)


async def _last_seq(settings: Settings, stream: str) -> int:
    bus = await open_bus(settings)
    try:
        return (await bus.js.stream_info(stream)).state.last_seq
    finally:
        await bus.close()


# --- the test ---------------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[embedded.Cluster]:
    with embedded.start_cluster(tmp_path / "cluster", 3) as c:
        yield c


def _settings(root: Path, url: str, **extra: str) -> Settings:
    return make_settings(root, url, ARCHIVE_PATH=str(root / "archive" / "decisions.duckdb"), **ENV, **extra)


@pytest.mark.slow
def test_pipeline_under_chaos_matches_the_quiet_reference(
    nats_server: embedded.EmbeddedServer, cluster: embedded.Cluster, tmp_path: Path
) -> None:
    ref_settings = _settings(tmp_path / "ref", nats_server.url)
    reference = asyncio.run(reference_run(ref_settings, tmp_path / "ref"))
    ref_rows = archive_rows(ref_settings)

    chaos_settings = _settings(tmp_path / "chaos", cluster.url, NATS_REPLICAS="3")
    asyncio.run(_ready(chaos_settings))
    actions, chaotic = asyncio.run(chaos_run(chaos_settings, cluster, tmp_path / "chaos"))
    rows = archive_rows(chaos_settings)

    assert actions == [
        "two learner instances share the partitions",
        "killed nats node n1",
        "SIGKILLed a profile-learner mid-stream",
        "SIGKILLed the archiver, restarted it onto a broken archive",
        "restarted n1",
        "repaired the archive",
        "killed nats node n0",
        "SIGKILLed the archiver again",
        "restarted n0",
    ]
    _assert_reference_is_meaningful(reference, ref_rows)
    for stream in OUTPUT_STREAMS:
        lost = reference[stream] - chaotic[stream]
        extra = chaotic[stream] - reference[stream]
        assert not lost and not extra, f"{stream}: {sum(lost.values())} lost/different, {sum(extra.values())} extra"
    assert rows == ref_rows


def _assert_reference_is_meaningful(ref: dict[str, Counter[tuple[str, str, bytes]]], rows: list[Any]) -> None:
    """The trace exercised what it is meant to: alerts, a dedup, a throttle, learning, the archive."""
    for stream, msgs in ref.items():
        assert max(msgs.values()) == 1, f"{stream}: the reference itself stored a message twice"
    subjects = Counter(subject for subject, _, _ in ref[ALERTS])
    out_ids = [mid for subject, mid, _ in ref[ALERTS] if subject == "vigil.alerts.out"]
    assert subjects["vigil.alerts.out"] >= 16 and any(i.startswith("out:threshold:") for i in out_ids)
    actions = Counter(row[5] for row in rows)
    assert actions["throttle"] == 1 and actions["dedup"] == 1 and actions["alert"] >= 17, actions
    assert sum(1 for row in rows if row[3] == "gatekeeper") == GATEKEEPER_DECISIONS
    assert len(rows) == sum(1 for subject, _, _ in ref[DECISIONS])
