"""Observability on a real nats-server: one trace id from the collector's batch
through a service to the archive (W3C ``traceparent`` in message headers), and
the Prometheus exporter serving the runtime's metrics when configured."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collector.publisher import BatchingPublisher
from contracts.codec import encode_json
from contracts.decisions import Decision
from contracts.events import Container, ExecObserved, Process
from contracts.subjects import ALERTS, ALERTS_OUT, ALERTS_RAW, EVENTS, decisions_subject
from services.decision_log_archiver.app import Archiver
from services.runtime import telemetry
from services.runtime.bus import publish_one
from services.runtime.settings import Settings
from services.throttler.app import Throttler
from tests.support import open_bus, read_stream, running, service_env, wait_for

T0 = 1_767_225_600_000_000_000


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    telemetry.sdk_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def _alert_json(i: int) -> bytes:
    # JSON by hand keeps this test independent of optional Alert fields.
    return (
        b'{"kind":"alert.v1","id":"a%d","time":%d,"event_type":"exec","container":{"id":"c1","image_name":"nginx"}}'
        % (i, T0 + i)
    )


async def _trace_through(settings: Settings) -> dict[str, str]:
    tracer = telemetry.tracer("test")
    bus = await open_bus(settings)
    ids: dict[str, str] = {}
    try:
        with tracer.start_as_current_span("operator request") as root:
            ids["root"] = format(root.get_span_context().trace_id, "032x")
            async with bus.publisher() as pub:  # collector batch: span inside the caller's trace
                batcher = BatchingPublisher(pub, "n1", "boot", settings.nats.partitions)
                proc = Process(pid=1, path="/bin/sh")
                await batcher.add(
                    ExecObserved(time=T0, node="n1", container=Container(id="c1", image_name="nginx"), process=proc)
                )
                await batcher.drain()
            headers = telemetry.inject()
        await publish_one(bus, ALERTS_RAW, _alert_json(1), "alert-1", headers)
        decision = Decision(id="d-trace", time=T0, source="self_test", event_type="self_test")
        await publish_one(bus, decisions_subject("self_test"), encode_json(decision), decision.id, headers)
        archiver = Archiver(settings)
        async with running(Throttler(settings), settings), running(archiver, settings):
            await wait_for(lambda: _count(bus, ALERTS, ALERTS_OUT))
            await wait_for(lambda: archiver.counters["archived"] >= 1)
        batch = (await read_stream(bus, EVENTS))[0]
        ids["batch"] = telemetry.trace_id_of(batch.headers or {})
        out = (await read_stream(bus, ALERTS, ALERTS_OUT))[0]
        ids["throttler_out"] = telemetry.trace_id_of(out.headers or {})
    finally:
        await bus.close()
    return ids


async def _count(bus, stream: str, subject: str) -> int:  # type: ignore[no-untyped-def]
    return len(await read_stream(bus, stream, subject))


def test_one_trace_id_from_collector_batch_through_throttler_to_archive(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    ids = asyncio.run(_trace_through(settings))
    root = ids["root"]
    assert ids["batch"] == root  # collector batch header
    assert ids["throttler_out"] == root  # a service's output carries its input's trace
    by_name = {s.name: s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == root}
    assert {"collector batch", "throttler handle", "decision-log-archiver handle"} <= set(by_name)
    assert by_name["throttler handle"].parent is not None  # continued, not a new root


def test_output_without_trace_context_starts_a_fresh_trace(settings: Settings, spans: InMemorySpanExporter) -> None:
    async def scenario() -> str:
        bus = await open_bus(settings)
        try:
            await publish_one(bus, ALERTS_RAW, _alert_json(2), "alert-2")
            async with running(Throttler(settings), settings):
                await wait_for(lambda: _count(bus, ALERTS, ALERTS_OUT))
            return telemetry.trace_id_of((await read_stream(bus, ALERTS, ALERTS_OUT))[0].headers or {})
        finally:
            await bus.close()

    trace_id = asyncio.run(scenario())
    assert len(trace_id) == 32 and trace_id != "0" * 32


def test_prometheus_exporter_serves_runtime_metrics(settings: Settings) -> None:
    pytest.importorskip("opentelemetry.exporter.prometheus", reason="the prometheus extra is not installed")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    asyncio.run(_publish_alert(settings))
    env = {
        **service_env(settings),
        "VIGIL_TELEMETRY_EXPORTER": "prometheus",
        "VIGIL_TELEMETRY_PROMETHEUS_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "run", "throttler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = asyncio.run(wait_for(lambda: _scrape(port), timeout=30, interval=0.2))
    finally:
        proc.terminate()
        proc.wait(20)
    assert "vigil_messages_in" in body


async def _publish_alert(settings: Settings) -> None:
    bus = await open_bus(settings)
    try:
        await publish_one(bus, ALERTS_RAW, _alert_json(3), "alert-3")
    finally:
        await bus.close()


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
            body = resp.read().decode()
    except OSError:
        return ""
    return body if "vigil_messages_in" in body else ""
