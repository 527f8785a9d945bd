"""OpenTelemetry: spans with W3C trace context carried in message headers, and
metrics per service. Exporters (OTLP, Prometheus) are chosen by
``telemetry.exporter``; with ``none`` spans are still created so the trace id
travels along the path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts.headers import TRACEPARENT_HEADER
from services.runtime.settings import Settings

_propagator = TraceContextTextMapPropagator()
_configured = False


def configure(settings: Settings, service: str) -> None:
    """Install providers once per process (idempotent)."""
    global _configured
    if _configured:
        return
    _configured = True
    resource = Resource.create({"service.name": f"vigil-{service}"})
    tracer_provider = TracerProvider(resource=resource)
    readers: list[Any] = []
    if settings.telemetry.exporter == "otlp":
        tracer_provider.add_span_processor(_otlp_spans(settings.telemetry.otlp_endpoint))
        readers.append(_otlp_metrics(settings.telemetry.otlp_endpoint))
    elif settings.telemetry.exporter == "prometheus":
        readers.append(_prometheus(settings.telemetry.prometheus_port))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    propagate.set_global_textmap(_propagator)


def _otlp_spans(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # optional extra
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))


def _otlp_metrics(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter  # optional extra
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True))


def _prometheus(port: int) -> Any:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader  # optional extra
    from prometheus_client import start_http_server

    start_http_server(port, addr="127.0.0.1")
    return PrometheusMetricReader()


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def extract(headers: Mapping[str, str]) -> Context:
    return _propagator.extract(carrier=dict(headers))


def inject() -> dict[str, str]:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


@dataclass(frozen=True)
class ServiceMeters:
    inputs: metrics.Counter
    outputs: metrics.Counter
    dead_letters: metrics.Counter


def service_meters(service: str) -> ServiceMeters:
    meter = metrics.get_meter(f"vigil.{service}")
    return ServiceMeters(
        inputs=meter.create_counter("vigil.messages_in", description=f"{service}: input messages handled"),
        outputs=meter.create_counter("vigil.messages_out", description=f"{service}: output messages published"),
        dead_letters=meter.create_counter("vigil.dead_letters", description=f"{service}: inputs dead-lettered"),
    )


# --- additions for operations (self-test, tests, exported counters) ------------------------


def sdk_tracer_provider() -> TracerProvider:
    """The process's SDK tracer provider; installs one when only the API's default is set.

    Tests attach an ``InMemorySpanExporter`` to it; ``configure`` installs the
    same kind of provider for a service process."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(resource=Resource.create({"service.name": "vigil"}))
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(_propagator)
    return provider


def trace_id_of(headers: Mapping[str, str]) -> str:
    """The W3C trace id (32 hex digits) in a message's ``traceparent`` header, or ''."""
    parts = headers.get(TRACEPARENT_HEADER, "").split("-")
    return parts[1] if len(parts) == 4 else ""


def observe_counters(service: str, counters: Mapping[str, int]) -> None:
    """Export a service's own counters (the ones its heartbeat carries: events,
    profiles, ``security_profile.versions``, ``security_profile.evicted_versions``,
    throttled alerts, archived decisions, …) as the gauge ``vigil.service.counter``
    with attributes ``service`` and ``name``, read at every collection."""
    from opentelemetry.metrics import CallbackOptions, Observation

    def observe(_: CallbackOptions) -> list[Observation]:
        return [Observation(int(v), {"service": service, "name": k}) for k, v in list(counters.items())]

    metrics.get_meter(f"vigil.{service}").create_observable_gauge(
        "vigil.service.counter", callbacks=[observe], description="a service's own counters, by name"
    )
