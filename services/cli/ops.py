"""Operations commands mounted at the top level: `vigil self-test` and `vigil flare`.

``self-test`` proves the pipeline end to end on the running system: it runs a
short-lived test workload (exec, file open, DNS query) in a temporary
directory, gets its activity onto EVENTS — through the kernel collector when
one runs, otherwise through the trace path (the same BatchingPublisher the
collector uses) — and checks that the profile-learner's durable consumer acked
past it, then publishes a test decision (source ``self_test``) and checks that
the archiver acked it (it acks only after the DuckDB commit) and, when the
archiver's query endpoint answers, that the row is there. It prints ``Runtime
self test: OK`` or names every failed check, and exits 0 or 1.

``flare`` gathers a diagnostic bundle (effective config with secrets redacted,
versions, log tails, streams and consumers, heartbeats, a metrics snapshot,
recent dead letters), lists it, and asks before writing or sending it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from services.cli.common import ConfigOpt
from services.cli.output import console, err_console
from services.runtime.settings import Loaded, Settings, SettingsError, load

LEARNER = "profile-learner"
ARCHIVER = "decision-log-archiver"
SELF_TEST_IMAGE = "vigil-self-test"


def register(root: typer.Typer) -> None:
    """Add the operations commands to the root CLI."""
    root.command("self-test")(self_test)
    root.command("flare")(flare)


def _load_or_exit(config: Path | None) -> Loaded:
    # An unreachable bus is a named check / a bus-error.txt here, not a traceback per reconnect attempt.
    logging.getLogger("nats.aio.client").setLevel(logging.CRITICAL)
    try:
        return load(config)
    except SettingsError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


# ===================================================================== self-test


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


def self_test(
    path: str = typer.Option("auto", "--path", help="auto | kernel | trace: how the test activity reaches the bus"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for each propagation check"),
    config: Path | None = ConfigOpt,
) -> None:
    """Trigger test activity and check it propagates: collector/trace → bus → learner, decision → archive."""
    settings = _load_or_exit(config).settings
    if path not in ("auto", "kernel", "trace"):
        err_console.print(f"[red]error:[/red] --path must be auto, kernel or trace, got {path!r}")
        raise typer.Exit(2)
    report = asyncio.run(run_self_test(settings, path=path, timeout=timeout))
    if report.path:
        console.print(f"activity path: {report.path}")
    for check in report.checks:
        mark = (
            "[green]ok[/green]"
            if check.ok and not check.skipped
            else ("skipped" if check.skipped else "[red]FAILED[/red]")
        )
        console.print(f"  {mark:<8} {check.name}: {check.detail}", highlight=False)
    if report.ok:
        console.print("Runtime self test: OK")
        return
    failed = ", ".join(c.name for c in report.checks if not c.ok)
    console.print(f"Runtime self test: FAILED ({failed})")
    raise typer.Exit(1)


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
            workload = _run_workload(Path(tmp), nonce)
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


# --- the test workload ------------------------------------------------------------

_WORKLOAD = """
import socket, sys
src, dst, name = sys.argv[1:4]
with open(src) as f, open(dst, "w") as g:
    g.write(f.read())
try:
    socket.getaddrinfo(name, 53)
except OSError:
    pass
"""


@dataclass
class Workload:
    ran: bool
    detail: str
    pid: int = 0
    ppid: int = 0
    argv: list[str] = field(default_factory=list)
    src: str = ""
    dst: str = ""
    dns: str = ""
    started_ns: int = 0
    ended_ns: int = 0


def _run_workload(tmp: Path, nonce: str) -> Workload:
    """Run the test workload: exec a fresh interpreter that opens a file, writes one and resolves a name."""
    src, dst = tmp / "input.txt", tmp / "output.txt"
    src.write_text(f"vigil self test {nonce}\n")
    dns = f"self-test-{nonce.split('-')[-1]}.vigil.invalid"
    argv = [sys.executable, "-c", _WORKLOAD, str(src), str(dst), dns]
    started = time.time_ns()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        return Workload(False, "the test workload did not finish within 15s")
    ended = time.time_ns()
    ok = proc.returncode == 0 and dst.exists()
    detail = f"exec {Path(sys.executable).name}, open {src.name}, write {dst.name}, DNS {dns}"
    if not ok:
        detail = f"exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}"
    return Workload(
        ok,
        detail,
        pid=0,
        ppid=os.getpid(),
        argv=argv[:2] + ["…", *argv[3:]],
        src=str(src),
        dst=str(dst),
        dns=dns,
        started_ns=started,
        ended_ns=ended,
    )


def _trace_events(workload: Workload, settings: Settings, nonce: str) -> list[Any]:
    from contracts.events import (
        Container,
        ContainerStarted,
        ContainerStopped,
        DnsQueried,
        DnsQuery,
        ExecObserved,
        FileAccess,
        FileOpened,
        Process,
    )

    node = settings.node_name
    t0, t1 = workload.started_ns, max(workload.ended_ns, workload.started_ns + 5)
    container = Container(
        id=f"self-test-{nonce}", image_name=SELF_TEST_IMAGE, image_tag="self-test", name="vigil-self-test"
    )
    proc = Process(
        pid=os.getpid(),
        ppid=workload.ppid,
        comm="python",
        path=sys.executable,
        argv=workload.argv,
        ancestors=["vigil self-test"],
    )
    return [
        ContainerStarted(time=t0, node=node, container=container),
        ExecObserved(time=t0 + 1, node=node, container=container, process=proc),
        FileOpened(
            time=t0 + 2, node=node, container=container, process=proc, file=FileAccess(path=workload.src, flags=0)
        ),
        FileOpened(
            time=t0 + 3,
            node=node,
            container=container,
            process=proc,
            file=FileAccess(path=workload.dst, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ),
        DnsQueried(time=t0 + 4, node=node, container=container, process=proc, dns=DnsQuery(name=workload.dns)),
        ContainerStopped(time=t1, node=node, container=container),
    ]


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
    events = [e for e in _trace_events(workload, settings, nonce) if kinds.get(type(e).__name__, "") in wanted | {""}]
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


async def _kernel_activity(
    bus: Any, tmp: Path, nonce: str, timeout: float, report: SelfTestReport, want: set[str] | None = None
) -> list[tuple[str, int]]:
    """Run the workload while a core subscription watches EVENTS for its activity as the
    kernel collector reports it (a JetStream publish is also delivered to core subscribers)."""
    from contracts.codec import decode_batch
    from contracts.events import DnsQueried, ExecObserved, FileOpened
    from contracts.subjects import EVENTS

    src, dst = str(tmp / "input.txt"), str(tmp / "output.txt")
    dns = f"self-test-{nonce.split('-')[-1]}.vigil.invalid"
    seen: set[str] = set()
    subjects: set[str] = set()

    async def on_msg(msg: Any) -> None:
        try:
            batch = decode_batch(msg.data)
        except Exception:  # noqa: BLE001 - not ours to judge
            return
        for ev in batch.events:
            if isinstance(ev, FileOpened) and ev.file.path in (src, dst):
                seen.add("open")
                subjects.add(msg.subject)
            elif isinstance(ev, DnsQueried) and ev.dns.name.rstrip(".") == dns:
                seen.add("dns")
                subjects.add(msg.subject)
            elif isinstance(ev, ExecObserved) and src in ev.process.argv:
                seen.add("exec")
                subjects.add(msg.subject)

    sub = await bus.nc.subscribe("vigil.events.*", cb=on_msg)
    try:
        workload = await asyncio.to_thread(_run_workload, tmp, nonce)
        report.add("test workload", workload.ran, workload.detail)
        deadline = time.monotonic() + timeout
        want = {"exec", "open", "dns"} if want is None else want
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


# ===================================================================== flare


def flare(
    case_id: str | None = typer.Argument(None, help="support case id (goes in the file name and the upload)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation (scripts)"),
    send: str | None = typer.Option(None, "--send", help="also POST the bundle to this URL"),
    out: Path | None = typer.Option(None, "--out", help="zip path (default: <data_dir>/flares/…)"),
    log_bytes: int = typer.Option(256 * 1024, "--log-bytes", help="tail of each log file to include"),
    config: Path | None = ConfigOpt,
) -> None:
    """Diagnostic bundle for support: config (secrets redacted), versions, logs, bus state, heartbeats, dead letters."""
    loaded = _load_or_exit(config)
    files = asyncio.run(gather_flare(loaded, case_id, log_bytes))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = out or loaded.settings.data_path / "flares" / f"vigil-flare-{case_id or 'nocase'}-{stamp}.zip"
    console.print(f"The flare will contain {len(files)} files:")
    for name, text in files.items():
        console.print(f"  {name:<32} {len(text.encode()):>9} bytes", highlight=False)
    console.print(f"It will be written to {target}" + (f" and sent to {send}" if send else "") + ".")
    if not yes and not typer.confirm("Proceed?", default=False):
        console.print("Nothing written.")
        raise typer.Exit(1)
    write_zip(target, files)
    console.print(f"wrote {target}")
    if send:
        try:
            status = send_flare(target, send, case_id)
        except Exception as exc:  # noqa: BLE001 - the bundle stays on disk
            err_console.print(f"[red]error:[/red] sending failed: {exc}; the bundle is at {target}")
            raise typer.Exit(1) from exc
        console.print(f"sent to {send}: HTTP {status}")


async def gather_flare(loaded: Loaded, case_id: str | None, log_bytes: int = 256 * 1024) -> dict[str, str]:
    """Every file of the bundle, name → text, already redacted (config first, so its secrets scrub the rest)."""
    from services.runtime import diagnostics as d

    settings = loaded.settings
    scrub = d.Scrubber()
    files: dict[str, str] = {}
    files["config.json"] = d.to_json(d.effective_config(settings, loaded.sources, scrub))
    files["environment.json"] = d.to_json(scrub.env(os.environ))
    files["versions.json"] = d.to_json(d.versions())
    files.update(await _bus_files(settings))
    for name, text in d.log_tails(settings.data_path, log_bytes).items():
        files[f"logs/{name}"] = text
    files["MANIFEST.json"] = d.to_json(
        {
            "case_id": case_id or "",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config_file": loaded.path or "",
            "files": sorted(files),
        }
    )
    return {name: scrub.text(text) for name, text in files.items()}


async def _bus_files(settings: Settings) -> dict[str, str]:
    from services.runtime import diagnostics as d
    from services.runtime.bus import connect

    try:
        bus = await asyncio.wait_for(connect(settings, start_embedded=False, name="vigil-flare"), 3)
    except Exception as exc:  # noqa: BLE001 - a flare of a broken system is the most useful one
        return {"bus-error.txt": f"could not connect to the bus: {exc}\n"}
    try:
        streams, consumers = await d.stream_report(bus)
        beats = await d.heartbeats(bus)
        letters = await d.dead_letters(bus)
    finally:
        await bus.close()
    return {
        "streams.json": d.to_json(streams),
        "consumers.json": d.to_json(consumers),
        "heartbeats.json": d.to_json(beats),
        "metrics.json": d.to_json(d.metrics_snapshot(beats, consumers)),
        "deadletters.jsonl": "".join(json.dumps(x, sort_keys=True, default=str) + "\n" for x in letters),
    }


def write_zip(target: Path, files: dict[str, str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    os.replace(tmp, target)


def send_flare(path: Path, url: str, case_id: str | None) -> int:
    """HTTP POST of the zip; the case id goes in a query parameter and a header."""
    if case_id:
        sep = "&" if urllib.parse.urlparse(url).query else "?"
        url = f"{url}{sep}case_id={urllib.parse.quote(case_id)}"
    req = urllib.request.Request(
        url,
        data=path.read_bytes(),
        method="POST",
        headers={"Content-Type": "application/zip", "X-Vigil-Case-Id": case_id or "", "X-Vigil-Filename": path.name},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - operator-given URL
        return int(resp.status)


def spawn_self_test(env: dict[str, str], timeout: float = 60.0) -> subprocess.Popen[bytes]:
    """`vigil up`'s hook when ``self_test.enabled``: run the self-test in the background on the
    same bus; it waits (up to ``timeout``) for the services' heartbeats, prints its verdict to
    the terminal and exits. `vigil up` does not restart it."""
    cmd = [sys.executable, "-m", "services.cli.main", "self-test", "--timeout", str(timeout)]
    return subprocess.Popen(cmd, env=env)
