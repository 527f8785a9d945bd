"""The self-test's checks, in order: the bus, the switches, the streams, the services'
heartbeats, the test activity reaching EVENTS (kernel collector or trace path), the
learner acking past it, a test decision archived and, when the archiver's query
endpoint answers, found by id. Every failure is a named check, never a raise."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.cli.self_test.workload import SELF_TEST_IMAGE, Workload, run_workload, trace_events
from services.runtime.settings import Settings

LEARNER = "profile-learner"
ARCHIVER = "decision-log-archiver"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False


@dataclass
class SelfTestReport:
    path: str = ""
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "", skipped: bool = False) -> bool:
        self.checks.append(Check(name, ok, detail, skipped))
        return ok


async def run_self_test(settings: Settings, path: str = "auto", timeout: float = 30.0) -> SelfTestReport:
    """Every check, in order; a failed prerequisite (the bus) ends the run with that check named."""
    from services.runtime.bus import connect

    report = SelfTestReport()
    try:
        bus = await asyncio.wait_for(
            connect(settings, start_embedded=False, name="vigil-self-test"), min(10, timeout + 2)
        )
    except Exception as exc:  # noqa: BLE001 - every failure is a named check
        where = settings.nats.url or f"the server `vigil up` records in {settings.data_path}"
        report.add("bus reachable", False, f"cannot connect to {where}: {str(exc) or type(exc).__name__}")
        return report
    try:
        report.add("bus reachable", True, bus.nc.connected_url.netloc if bus.nc.connected_url else "")
        await _run_checks(bus, settings, report, path, timeout)
    finally:
        await bus.close()
    return report


async def _run_checks(bus: Any, settings: Settings, report: SelfTestReport, path: str, timeout: float) -> None:
    from contracts.subjects import DECISIONS, EVENTS

    _check_switches(settings, report)
    missing = [s for s in (EVENTS, DECISIONS) if not await _stream_exists(bus, s)]
    if not report.add(
        "streams", not missing, f"missing {', '.join(missing)}" if missing else "EVENTS, DECISIONS present"
    ):
        return
    await _check_services(bus, report, timeout)
    chosen, why = await _choose_path(bus, settings, path, timeout)
    report.path = f"{chosen} ({why})"
    nonce = f"{int(time.time())}-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="vigil-self-test-") as tmp:
        if chosen == "kernel":
            seqs = await _kernel_activity(bus, Path(tmp), nonce, timeout, report, enabled_activity(settings))
        else:
            workload = run_workload(Path(tmp), nonce)
            report.add("test workload", workload.ran, workload.detail)
            seqs = await _trace_activity(bus, settings, workload, nonce, report)
    if seqs:
        await _check_consumed(bus, EVENTS, LEARNER, seqs, timeout, report, "learner consumed the events")
    await _check_decision(bus, nonce, timeout, report)


def enabled_activity(settings: Settings) -> set[str]:
    """The test activity the configuration lets through: exec, open, dns (dns needs network.enabled)."""
    rsc = settings.runtime_security_config
    kinds = {k for k in ("exec", "open", "dns") if getattr(rsc.event_types, k)}
    return kinds - ({"dns"} if not rsc.network.enabled else set())


def _check_switches(settings: Settings, report: SelfTestReport) -> None:
    """Runtime security switched off is a failed check; switched-off event types are named."""
    rsc = settings.runtime_security_config
    if not rsc.enabled:
        report.add("runtime security enabled", False, "runtime_security_config.enabled is false")
        return
    off = sorted({"exec", "open", "dns"} - enabled_activity(settings))
    detail = "all test event types on" if not off else f"not tested (switched off): {', '.join(off)}"
    report.add("runtime security enabled", True, detail)


async def _stream_exists(bus: Any, name: str) -> bool:
    try:
        await bus.js.stream_info(name)
        return True
    except Exception:  # noqa: BLE001 - not found or no JetStream
        return False


async def _check_services(bus: Any, report: SelfTestReport, timeout: float) -> None:
    from services.registry import SERVICES
    from services.runtime.diagnostics import heartbeats

    deadline = time.monotonic() + timeout
    while True:
        live = {b["service"] for b in await heartbeats(bus)}
        needed = [s for s in (LEARNER, ARCHIVER) if s not in live]
        if not needed or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    others = [s for s in SERVICES if s not in live and s not in (LEARNER, ARCHIVER)]
    detail = f"live: {', '.join(sorted(live)) or 'none'}"
    if others:
        detail += f"; not running: {', '.join(others)}"
    report.add(
        "services alive", not needed, detail if not needed else f"no heartbeat from {', '.join(needed)}; {detail}"
    )


async def _choose_path(bus: Any, settings: Settings, wanted: str, timeout: float = 30.0) -> tuple[str, str]:
    """kernel when a collector with attached probes heartbeats and would report this process, else trace."""
    from collector.main import collector_available

    if wanted == "trace":
        return "trace", "requested"
    usable, why = collector_available(settings)
    if not settings.runtime_security_config.enabled:
        usable, why = False, "runtime_security_config.enabled is false"
    elif usable and wanted == "auto" and settings.collector.host_processes == "ignore" and not _in_container():
        usable, why = (
            False,
            "the collector ignores host processes (collector.host_processes: ignore) and this runs on the host",
        )
    elif usable:
        usable, why = await _collector_attached(bus, timeout)
    if usable:
        return "kernel", "eBPF collector is running"
    if wanted == "kernel":
        return "kernel", f"requested, but {why}"
    return "trace", f"kernel collector not used: {why}; published with collector.publisher.BatchingPublisher"


async def _collector_attached(bus: Any, timeout: float) -> tuple[bool, str]:
    """Wait (up to ``timeout``) for a collector heartbeat showing attached probes: the collector
    heartbeats while BCC still compiles, and reports ``records`` (or ``attached``) once it reads the ring."""
    from services.runtime.diagnostics import heartbeats

    deadline = time.monotonic() + timeout
    why = "no collector heartbeat in vigil_heartbeats"
    while True:
        beats = [b for b in await heartbeats(bus) if b["service"] == "collector"]
        if any(b["counters"].get("attached") or b["counters"].get("records") for b in beats):
            return True, ""
        if beats:
            why = "the collector heartbeats but has not attached its probes yet"
        if time.monotonic() > deadline:
            return False, why
        await asyncio.sleep(0.5)


def _in_container() -> bool:
    """Whether this process runs in a container (cgroup v2 path other than the root)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return False
    return any(
        line.startswith("0::/")
        and line.strip() not in ("0::/", "0::/init.scope")
        and "/user.slice" not in line
        and "/system.slice" not in line
        for line in lines
    )


async def _trace_activity(
    bus: Any, settings: Settings, workload: Workload, nonce: str, report: SelfTestReport
) -> list[tuple[str, int]]:
    """Publish the workload's activity as raw events; returns (subject, stream seq) of each batch."""
    from collector.publisher import BatchingPublisher
    from contracts.subjects import events_subject

    if not workload.ran:
        return []
    kinds = {"ExecObserved": "exec", "FileOpened": "open", "DnsQueried": "dns"}
    wanted = enabled_activity(settings)
    events = [e for e in trace_events(workload, settings, nonce) if kinds.get(type(e).__name__, "") in wanted | {""}]
    async with bus.publisher() as pub:
        batcher = BatchingPublisher(pub, settings.node_name, f"self-test-{nonce}", settings.nats.partitions, 1000)
        await batcher.add_all(events)
        await batcher.flush_batches()
        acks = await pub.flush()
    from contracts.subjects import partition_of

    subject = events_subject(partition_of(SELF_TEST_IMAGE, settings.nats.partitions))
    seqs = [(subject, a.seq) for a in acks]
    shown = ", ".join(sorted(wanted)) or "life-cycle only"
    report.add("events published", bool(seqs), f"{len(events)} events ({shown}) in {len(seqs)} batch(es) on {subject}")
    return seqs


def _workload_kinds(events: list[Any], src: str, dst: str, dns: str) -> set[str]:
    """Which of the test workload's activities (exec, open, dns) these raw events show."""
    from contracts.events import DnsQueried, ExecObserved, FileOpened

    kinds = set()
    for ev in events:
        if isinstance(ev, FileOpened) and ev.file.path in (src, dst):
            kinds.add("open")
        elif isinstance(ev, DnsQueried) and ev.dns.name.rstrip(".") == dns:
            kinds.add("dns")
        elif isinstance(ev, ExecObserved) and src in ev.process.argv:
            kinds.add("exec")
    return kinds


async def _kernel_activity(
    bus: Any, tmp: Path, nonce: str, timeout: float, report: SelfTestReport, want: set[str] | None = None
) -> list[tuple[str, int]]:
    """Run the workload while a core subscription watches EVENTS for its activity as the
    kernel collector reports it (a JetStream publish is also delivered to core subscribers)."""
    from contracts.codec import ContractError, decode_batch
    from contracts.subjects import EVENTS, EVENTS_ALL

    src, dst = str(tmp / "input.txt"), str(tmp / "output.txt")
    dns = f"self-test-{nonce.split('-')[-1]}.vigil.invalid"
    seen: set[str] = set()
    subjects: set[str] = set()

    async def on_msg(msg: Any) -> None:
        try:
            kinds = _workload_kinds(decode_batch(msg.data).events, src, dst, dns)
        except ContractError:  # not ours to judge
            return
        seen.update(kinds)
        if kinds:
            subjects.add(msg.subject)

    want = {"exec", "open", "dns"} if want is None else want
    sub = await bus.nc.subscribe(EVENTS_ALL, cb=on_msg)
    try:
        workload = await asyncio.to_thread(run_workload, tmp, nonce)
        report.add("test workload", workload.ran, workload.detail)
        deadline = time.monotonic() + timeout
        while not want <= seen and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await sub.unsubscribe()
    missing = sorted(want - seen)
    hint = "" if not missing else " (host processes are dropped unless collector.host_processes is tag)"
    report.add(
        "kernel collector saw the workload",
        not missing,
        f"saw {', '.join(sorted(seen)) or 'nothing'}" + (f"; missing {', '.join(missing)}{hint}" if missing else ""),
    )
    if missing:
        return []
    last = (await bus.js.stream_info(EVENTS)).state.last_seq
    return [(s, last) for s in sorted(subjects)]


# --- propagation checks ------------------------------------------------------------


async def _acked_past(bus: Any, stream: str, prefix: str, seqs: list[tuple[str, int]]) -> tuple[bool, str]:
    """Whether, for every (subject, seq), a consumer named ``prefix…`` that sees the subject acked past seq."""
    from services.runtime.storage import covers

    infos = [ci for ci in await bus.js.consumers_info(stream) if ci.name.startswith(prefix)]
    if not infos:
        return False, f"no {prefix} consumer on {stream}"
    for subject, seq in seqs:
        floors = [ci.ack_floor.stream_seq for ci in infos if ci.ack_floor and covers(ci.config, subject)]
        if not floors or max(floors) < seq:
            return False, f"{prefix} ack floor {max(floors, default=0)} < seq {seq} on {subject}"
    return True, f"{prefix} acked past seq {max(s for _, s in seqs)}"


async def _check_consumed(
    bus: Any, stream: str, prefix: str, seqs: list[tuple[str, int]], timeout: float, report: SelfTestReport, name: str
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = await _acked_past(bus, stream, prefix, seqs)
        if ok or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    report.add(name, ok, detail)


async def _check_decision(bus: Any, nonce: str, timeout: float, report: SelfTestReport) -> None:
    from contracts.codec import encode_json
    from contracts.decisions import Decision
    from contracts.subjects import DECISIONS, decisions_subject
    from services.runtime.bus import publish_one

    decision = Decision(
        id=f"self_test:{nonce}",
        time=time.time_ns(),
        source="self_test",
        event_type="self_test",
        action="test",
        rule="vigil.self_test",
        message="vigil self-test decision",
        severity="info",
        image_name=SELF_TEST_IMAGE,
    )
    subject = decisions_subject("self_test")
    ack = await publish_one(bus, subject, encode_json(decision), decision.id)
    report.add("test decision published", ack.seq > 0, f"{decision.id} at DECISIONS seq {ack.seq}")
    await _check_consumed(bus, DECISIONS, ARCHIVER, [(subject, ack.seq)], timeout, report, "decision archived")
    await _query_archive(bus, decision.id, report)


async def _query_archive(bus: Any, decision_id: str, report: SelfTestReport) -> None:
    """Ask the archiver's read-only query endpoint for the row; skipped when nobody answers."""
    from contracts.subjects import QUERY_DECISIONS

    name = "archive query by id"
    try:
        from services.decision_log_archiver import client, query
    except ImportError:
        report.add(name, True, "skipped: this build has no archive query client", skipped=True)
        return
    sql = f"SELECT id, source FROM decisions WHERE id = '{decision_id}'"  # our own id: [a-z0-9:_-] only
    try:
        result = await client.ask(bus, query.QueryRequest(sql=sql, max_rows=10), timeout=5)
    except client.NoArchiver:
        report.add(name, True, f"skipped: no archiver answers on {QUERY_DECISIONS}", skipped=True)
        return
    except Exception as exc:  # noqa: BLE001 - refused, failed or timed out: a named failure
        report.add(name, False, f"{type(exc).__name__}: {exc}")
        return
    found = any(row and row[0] == decision_id for row in result.rows)
    report.add(
        name, found, "row found through the archiver" if found else f"no row for {decision_id}: {result.rows[:3]}"
    )
