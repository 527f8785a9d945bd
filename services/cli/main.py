"""`vigil`: the operator's surface.

Every command honours ``VIGIL_DATA_DIR`` and ``VIGIL_NATS_URL`` (or
``VIGIL_NATS_PORT`` for the embedded server) so several instances can run side
by side. Area commands live in their own modules (profiles, alerts, decisions,
models, workloads, ops) and are mounted here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import typer

from services.cli import alerts, decisions, events, flare, intake, models, profiles, replay, workloads
from services.cli.common import ConfigOpt, OutputOpt, fail, reach_bus, settings_or_exit, setup_logging
from services.cli.output import Format, console, err_console, rows
from services.cli.self_test import self_test, spawn_self_test
from services.registry import SERVICES
from services.runtime import embedded
from services.runtime.errors import VigilError
from services.runtime.settings import Settings, SettingsError, env_name, load, schema, type_name
from services.runtime.supervisor import Supervisor

app = typer.Typer(help="Vigil: runtime security for container workloads.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
for _mod in (profiles, alerts, decisions, models, workloads, events):
    app.add_typer(_mod.app, name=_mod.NAME)
for _mod in (replay, intake):
    _mod.register(app)
app.command("self-test")(self_test)
app.command("flare")(flare.flare)

# --- config -----------------------------------------------------------------------


@config_app.command("show")
def config_show(config: Path | None = ConfigOpt, output: Format = OutputOpt) -> None:
    """Effective values and where each came from (default, file, env)."""
    try:
        loaded = load(config)
    except SettingsError as exc:
        fail(str(exc), 2)
    from services.runtime.settings import flatten

    values = dict(flatten(loaded.settings))
    items = [
        {
            "key": key,
            "value": values[key],
            "source": loaded.sources.get(key, "default"),
            "env": env_name(key),
            "type": type_name(tp),
        }
        for key, tp, _ in schema()
    ]
    rows(items, ["key", "value", "source", "env"], output, title=f"config ({loaded.path or 'no file'})")


# --- run / up -----------------------------------------------------------------------


@app.command()
def run(
    service: str = typer.Argument(..., help=f"one of: {', '.join([*SERVICES, 'collector'])}"),
    config: Path | None = ConfigOpt,
) -> None:
    """Run one service in the foreground (SIGTERM drains in-flight work)."""
    settings = settings_or_exit(config)
    setup_logging(settings)
    from services.runtime import telemetry

    telemetry.configure(settings, service)
    if service == "collector":
        from collector.main import run_collector

        asyncio.run(run_collector(settings))
        return
    from services.registry import build
    from services.runtime.service import serve

    try:
        service_app = build(service, settings)
    except KeyError as exc:
        fail(f"{exc.args[0]}", 2)
    try:
        asyncio.run(serve(service_app, settings))
    except VigilError as exc:
        fail(str(exc))


def _service_list(settings: Settings) -> list[str]:
    from collector.main import collector_available

    names = list(SERVICES)
    ok, why = collector_available(settings)
    if ok:
        names.append("collector")
        if why == "ebpf":
            from collector.runtimes.resolver import discover

            found = sorted(f"{s.runtime} ({s.where})" for s in discover(settings, set()))
            console.print(
                "container runtimes: "
                + (
                    ", ".join(found)
                    if found
                    else "none found yet (looked again every "
                    f"{float(settings.collector.identity.discover_interval):g} s)"
                ),
                highlight=False,
            )
    else:
        console.print(f"collector: not started ({why})")
    return names


INTAKE = "decision-intake"  # `vigil up` runs `vigil intake` under this name when the intake is configured


@app.command()
def up(config: Path | None = ConfigOpt) -> None:
    """Start everything: the embedded NATS server (unless VIGIL_NATS_URL is set) and every service."""
    settings = settings_or_exit(config)
    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    server, url = _embedded_or_configured(settings)
    try:
        asyncio.run(_prepare_bus(settings, url))
        console.print(f"[bold]Vigil[/bold] data in {data}", highlight=False)
        where = f" (embedded, JetStream in {data / 'nats'})" if server else ""
        console.print(f"NATS: {url}{where}", highlight=False)
        env = {**os.environ, "VIGIL_NATS_URL": url, "VIGIL_DATA_DIR": str(data)}
        if config:
            env["VIGIL_CONFIG"] = str(config)
        names = _service_list(settings)
        if settings.decision_intake.enabled or settings.decision_intake.gatekeeper_dir:
            names.append(INTAKE)  # the socket and the directory follower are off unless configured
        supervisor = Supervisor(
            {name: [sys.executable, "-m", "services.cli.main", *_command(name)] for name in names},
            env,
            data / "logs",
            say=lambda line: console.print(f"  {line}", highlight=False),
        )
        _supervise(supervisor, settings, env)
    finally:
        if server is not None:
            server.stop()
            embedded.url_file(data).unlink(missing_ok=True)
        console.print("stopped.")


def _embedded_or_configured(settings: Settings) -> tuple[embedded.EmbeddedServer | None, str]:
    """The configured bus, or an embedded server started (and recorded) for this data dir."""
    if settings.nats.url:
        return None, settings.nats.url
    data = settings.data_path
    if embedded.read_url(data):
        fail(f"Vigil already runs with data dir {data} (see {embedded.url_file(data)})")
    server = embedded.start(data, port=settings.nats.port, monitor_port=settings.nats.monitor_port, own_group=True)
    embedded.write_url(data, server.url)
    return server, server.url


def _command(name: str) -> list[str]:
    return ["intake"] if name == INTAKE else ["run", name]


def _supervise(supervisor: Supervisor, settings: Settings, env: dict[str, str]) -> None:
    """Start every service, restart those that exit (with back-off) until a signal, then stop them."""
    supervisor.start_all()
    for name, child in supervisor.children.items():
        pid = child.proc.pid if child.proc else 0
        console.print(f"  started {name:<24} pid {pid:<8} log {supervisor.log_path(name)}", highlight=False)
    console.print("Ctrl-C stops everything.")
    if settings.self_test.enabled:
        spawn_self_test(env)  # prints `Runtime self test: OK` or the failed checks once services are up
    stopping = False

    def on_signal(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C, kill, the terminal closed
        signal.signal(signum, on_signal)
    try:
        while not stopping:
            time.sleep(0.5)
            if not stopping:
                supervisor.poll()
    finally:
        console.print("stopping services…")
        for name in supervisor.stop():
            console.print(f"  {name} did not stop in time; killed")


async def _prepare_bus(settings: Settings, url: str) -> None:
    import msgspec

    from services.runtime.bus import connect, ensure_buckets

    bus = await connect(msgspec.structs.replace(settings, nats=msgspec.structs.replace(settings.nats, url=url)))
    try:
        await bus.ensure_streams()
        await ensure_buckets(bus)
    finally:
        await bus.close()


# --- collect ----------------------------------------------------------------------------


@app.command()
def collect(
    from_: Path | None = typer.Option(None, "--from", help="JSONL trace to publish (DESIGN.md trace format)"),
    boot: str | None = typer.Option(None, help="publisher id for exactly-once ids (default: hash of the trace)"),
    config: Path | None = ConfigOpt,
) -> None:
    """Publish raw events as the collector would; with --from, exit when all of the trace is acknowledged."""
    settings = settings_or_exit(config)
    if from_ is None:
        setup_logging(settings)
        from collector.main import run_collector

        asyncio.run(run_collector(settings))
        return
    if not from_.exists():
        fail(f"no such trace: {from_}", 2)
    try:
        stats = asyncio.run(_collect_trace(settings, from_, boot))
    except VigilError as exc:
        fail(str(exc))
    console.print(
        f"published {stats['events']} events in {stats['batches']} batches "
        f"({stats['duplicates']} duplicate batches dropped by JetStream) in {stats['seconds']:.2f}s"
    )


async def _collect_trace(settings: Settings, path: Path, boot: str | None) -> dict[str, Any]:
    from rich.progress import Progress

    from collector.publisher import BatchingPublisher
    from contracts import trace
    from services.runtime.bus import connect

    boot = boot or "trace-" + hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    total = path.stat().st_size
    start = time.perf_counter()
    bus = await connect(settings, name="vigil-collect")
    try:
        await bus.ensure_streams()
        async with bus.publisher() as pub:
            batcher = BatchingPublisher(
                pub, settings.node_name, boot, settings.nats.partitions, settings.collector.batch_size
            )
            with open(path, "rb") as fh, Progress(console=err_console, transient=True) as progress:
                task = progress.add_task(f"publishing {path.name}", total=total)
                for lineno, line in enumerate(fh, 1):
                    stripped = line.strip()
                    if stripped and not stripped.startswith(b"#"):
                        try:
                            await batcher.add(trace.decode_line(stripped, lineno))
                        except trace.TraceError as exc:
                            raise VigilError(f"{path}:{exc}") from exc
                    if lineno % 2000 == 0:
                        progress.update(task, completed=fh.tell())
                await batcher.drain()
                progress.update(task, completed=total)
            return {
                "events": batcher.events,
                "batches": batcher.batches,
                "duplicates": pub.duplicates,
                "seconds": time.perf_counter() - start,
            }
    finally:
        await bus.close()


# --- status -----------------------------------------------------------------------------


@app.command()
def status(
    config: Path | None = ConfigOpt,
    output: Format = OutputOpt,
    require: list[str] = typer.Option([], "--require", help="exit 1 unless SERVICE heartbeats (readiness probes)"),
) -> None:
    """Streams, consumer lag, dead letters, live services and their counters."""
    settings = settings_or_exit(config)
    try:
        report = asyncio.run(_status(settings))
    except VigilError as exc:
        fail(str(exc))
    missing = sorted(set(require) - {s["service"] for s in report["services"]})
    if require:
        if missing:
            err_console.print(f"not ready: no heartbeat from {', '.join(missing)}")
            raise typer.Exit(1)
        console.print(f"ready: {', '.join(sorted(set(require)))}")
        return
    if output == Format.json:
        from services.cli.output import json_line

        json_line(report)
        return
    _print_status(report, output)


def _print_status(report: dict[str, Any], output: Format) -> None:
    console.print(f"NATS: {report['url']}")
    rows(
        report["streams"],
        ["stream", "messages", "bytes", "limit", "headroom", "first_seq", "last_seq"],
        output,
        title="streams (storage: bytes, limit, headroom)",
    )
    rows(
        report["consumers"],
        ["stream", "consumer", "lag", "pending", "ack_pending", "redelivered", "ack_floor"],
        output,
        title="consumers (lag = pending + ack_pending)",
    )
    rows(report["services"], ["service", "instance", "age_s", "position", "counters"], output, title="live services")
    rows(report["partitions"], ["service", "partition", "owner"], output, title="partition owners (leases)")
    _print_identity(report["identity"])
    summary = report["summary"]
    console.print(
        f"dead letters: {summary['dead_letters']}   total consumer lag: {summary['total_lag']}   "
        f"archive backlog: {summary['archive_backlog']}   archive size: {summary['archive_bytes']} bytes   "
        f"events archive: {summary['events_archive_bytes']} bytes   "
        f"live services: {len(report['services'])}",
        highlight=False,
    )
    if summary["not_running"]:
        console.print(f"[yellow]not running:[/yellow] {', '.join(summary['not_running'])}")
    off = [key for key, on in report["switches"].items() if not on]
    console.print("switched off: " + (", ".join(off) if off else "nothing"), highlight=False)


def _size(path: Path) -> int:
    """Bytes of a file on this host (0 when absent: the archive may live on another host)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


async def _status(settings: Settings) -> dict[str, Any]:
    from services.runtime import diagnostics
    from services.runtime.bus import data_path, resolve_url
    from services.runtime.event_archive import archive_bytes
    from services.runtime.partitions import owners

    url = resolve_url(settings)
    if url is None:
        raise VigilError(
            f"Vigil is not running (no VIGIL_NATS_URL, nothing in {settings.data_path}); start it with `vigil up`"
        )
    bus = await reach_bus(settings, "vigil-status")
    try:
        streams, consumers = await diagnostics.stream_report(bus)
        beats = await diagnostics.heartbeats(bus)
        owned = await owners(bus, "profile-learner", settings.nats.partitions)
    finally:
        await bus.close()
    partitions = [
        {"service": "profile-learner", "partition": p, "owner": owned.get(p, "(nobody)")}
        for p in range(settings.nats.partitions)
    ]
    services = [{k: b[k] for k in ("service", "instance", "age_s", "position", "counters")} for b in beats]
    live = {b["service"] for b in beats}
    summary = {
        "dead_letters": next((s["messages"] for s in streams if s["stream"] == "DEADLETTER"), 0),
        "total_lag": sum(c["lag"] for c in consumers),
        "archive_backlog": sum(c["lag"] for c in consumers if c["consumer"].startswith("decision-log-archiver")),
        "archive_bytes": _size(data_path(settings, settings.archive.path)),
        "events_archive_bytes": archive_bytes(data_path(settings, settings.storage.archive_dir))
        if settings.storage.archive_dir
        else 0,
        "not_running": [name for name in SERVICES if name not in live],
        "metrics": diagnostics.metrics_snapshot(beats, consumers),
    }
    return {
        "url": url,
        "streams": streams,
        "consumers": consumers,
        "services": services,
        "summary": summary,
        "switches": _switches(settings),
        "partitions": partitions,
        "identity": diagnostics.identity_report(beats),
    }


def _switches(settings: Settings) -> dict[str, bool]:
    """Every on/off switch and its value (`vigil status` names those that are off)."""
    import msgspec

    rsc = settings.runtime_security_config
    return {
        "runtime_security_config.enabled": rsc.enabled,
        "runtime_security_config.network.enabled": rsc.network.enabled,
        **{f"runtime_security_config.event_types.{k}": v for k, v in msgspec.structs.asdict(rsc.event_types).items()},
        "alert_throttling": settings.alert_throttling,
        "decision_intake.enabled": settings.decision_intake.enabled,
    }


def _print_identity(collectors: list[dict[str, Any]]) -> None:
    """Where each collector learns who a container is, and what it could not name."""
    for c in collectors:
        sources = ", ".join(c["sources"]) or "no container runtime found (only vigil workloads add / the file)"
        console.print(f"workload identity on {c['node']}: {sources}", highlight=False)
        for p in c["unresolved"]:
            examples = ", ".join(e[:12] if len(e) == 64 else e for e in p["examples"])
            console.print(
                f"  [yellow]not published[/yellow] ({p['cause']}): {p['events']} events"
                + (f", e.g. {examples}" if examples else "")
                + f"\n    hint: {p['hint']}",
                highlight=False,
            )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
