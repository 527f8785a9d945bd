"""Fuzz properties: for any bytes, a decoder returns a valid value or raises its
documented contract error, never anything else; whatever decodes re-encodes
and decodes to the same value.

Each target is ``check_<name>(data: bytes) -> None`` and raises AssertionError
(or the unexpected exception itself) when the property breaks; ``seeds_<name>()``
gives valid inputs to start the fuzzer from (generated here, so no binary
corpus is committed). Pure: importable and runnable without atheris, which is
how the regression tests replay crashing inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec

from contracts import intake, trace, workloads
from contracts.alerts import Alert
from contracts.codec import (
    JSON_TYPES,
    ContractError,
    decode_batch,
    decode_drift,
    decode_json,
    encode_batch,
    encode_json,
)
from contracts.events import ClockTicked, Container, EventBatch, ExecObserved, FileAccess, FileOpened, Process
from contracts.profiles import Drift, DriftBatch
from services.decision_intake import core as intake_core
from services.decision_intake.client import admission_line, export_line, export_marker, gatekeeper_line, marker_line

REJECT_KINDS = {"invalid_utf8", "invalid_json", "not_an_object", "invalid_fields", "too_long", "empty"}


@dataclass(frozen=True)
class Codec:
    name: str
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes]
    errors: tuple[type[Exception], ...]  # what decode is documented to raise


CODECS: tuple[Codec, ...] = (
    Codec("event_batch", decode_batch, encode_batch, (ContractError,)),
    Codec("drift_batch", decode_drift, encode_batch, (ContractError,)),
    *(Codec(kind, partial(decode_json, kind), encode_json, (ContractError,)) for kind in JSON_TYPES),
    # KV entries: the collector skips an entry that fails to decode, whatever the error
    Codec("workload", workloads.decode, workloads.encode, (msgspec.DecodeError, UnicodeDecodeError)),
)


def _round_trips(codec: Codec, value: Any) -> None:
    """encode(value) decodes back to value (or, for NaN/inf inside ``Any`` fields,
    which JSON cannot carry, to a value with the same encoding)."""
    encoded = codec.encode(value)
    again = codec.decode(encoded)
    assert again == value or codec.encode(again) == encoded, f"{codec.name}: {value!r} came back as {again!r}"


def check_codec(data: bytes) -> None:
    """The first byte picks the codec; the rest is the payload."""
    if not data:
        return
    codec = CODECS[data[0] % len(CODECS)]
    try:
        value = codec.decode(data[1:])
    except codec.errors:
        return
    _round_trips(codec, value)


def check_trace(data: bytes) -> None:
    """One line: a raw event or a TraceError; a decoded event survives a write and
    read (time to the microsecond, the format's precision). The whole input as a
    trace file: events or a TraceError naming a line."""
    try:
        event = trace.decode_line(data)
    except trace.TraceError as exc:
        assert exc.line == 1 and exc.reason, exc
    else:
        line = trace.encode_line(event)
        assert line.count(b"\n") == 1 and line.endswith(b"\n"), line  # one event, one line, whatever its paths hold
        expected = msgspec.structs.replace(event, time=event.time // 1000 * 1000)
        assert trace.decode_line(line) == expected, (event, line)
        batch = EventBatch(node="n1", boot="b1", first_seq=0, events=[event])
        assert decode_batch(encode_batch(batch)) == batch  # what a trace holds can be published
    lines = data.split(b"\n")
    try:
        events = list(trace.read(lines))
    except trace.TraceError as exc:
        assert 1 <= exc.line <= len(lines), exc
    else:
        assert len(events) <= len(lines)


def check_intake(data: bytes) -> None:
    """Never raises; a rejection has a reason and a known counter key; an accepted
    line's normalised form is a fixed point; split_lines loses no byte but the
    newlines (and a ``\\r`` before one)."""
    result = intake.normalise(data)
    if isinstance(result, intake.Rejected):
        assert result.reason and result.kind in REJECT_KINDS, result
    else:
        assert isinstance(result, intake.Accepted) and result.msg_id, result
        assert intake.normalise(encode_json(result.message)) == result, result
    lines, rest = intake_core.split_lines(data)
    assert len(lines) == data.count(b"\n") and b"\n" not in rest
    *segments, last = data.split(b"\n")
    assert rest == last and all(seg in (line, line + b"\r") for line, seg in zip(lines, segments, strict=True))


def _events() -> list[Any]:
    container = Container(id="c1", image_name="registry:5000/app", image_tag="1.2", pod="web-0", namespace="prod")
    process = Process(pid=42, ppid=1, comm="sh", path="/bin/sh", argv=["sh", "-c", "echo\nhi"], ancestors=["/init"])
    return [
        ExecObserved(time=1_700_000_000_123_456_000, node="n1", container=container, process=process),
        FileOpened(
            time=1_700_000_000_200_000_000,
            container=container,
            process=process,
            file=FileAccess(path="/etc/pa\nss\twd \u00e9", flags=0),
        ),
        ClockTicked(time=1_700_000_001_000_000_000, node="n1"),
    ]


def _drifts() -> DriftBatch:
    event = _events()[0]
    drift = Drift(
        id="d1",
        time=event.time,
        image_name="registry:5000/app",
        image_tag="1.2",
        event_type="exec",
        behaviour="/bin/sh",
        version_state="stable",
        reason="stable_version",
        inserted=False,
        container=event.container,
        event=event,
        event_id="n1:b1:1:7",
    )
    return DriftBatch(drifts=[drift], watermark=event.time)


def seeds_codec() -> list[bytes]:
    batch = EventBatch(node="n1", boot="b1", first_seq=7, partition=1, events=_events())
    index = {codec.name: i for i, codec in enumerate(CODECS)}
    event = _events()[0]
    alert = Alert(
        id="a1",
        time=event.time,
        event_type="exec",
        container=event.container,
        process=event.process,
        lineage=["/init", "/bin/sh"],
        event=event,
        version_state="stable",
    )
    decision = intake.normalise(gatekeeper_line(3, audit_id="2026-01-10T08:00:00Z"))
    assert isinstance(decision, intake.Accepted)
    return [
        bytes([index["event_batch"]]) + encode_batch(batch),
        bytes([index["drift_batch"]]) + encode_batch(_drifts()),
        bytes([index["alert"]]) + encode_json(alert),
        bytes([index["decision"]]) + encode_json(decision.message),
        bytes([index["gatekeeper_decision"]]) + gatekeeper_line(5),
        bytes([index["workload"]]) + workloads.encode(workloads.Workload(container_id="c1", image_name="app")),
        bytes([index["heartbeat"]]) + b'{"service":"s","instance":"i","host":"h","pid":1,"started":1.5,"updated":2.5}',
    ]


def seeds_trace() -> list[bytes]:
    return [trace.encode_line(event).rstrip(b"\n") for event in _events()] + [b'{"kind":"tick","time":5}']


def seeds_intake() -> list[bytes]:
    return [
        gatekeeper_line(1),
        gatekeeper_line(2, audit_id="2026-01-10T08:00:00Z"),
        marker_line("audit_started", "2026-01-10T08:00:00Z"),
        marker_line("audit_finished", "2026-01-10T08:00:00Z", 3),
        b"\xff\xfe not utf-8\r\n" + gatekeeper_line(4) + b"\npartial",
        export_line(5, "2026-01-10T08:00:00Z"),  # Gatekeeper's export as it ships
        admission_line(6, "req-6"),
        export_marker("2026-01-10T08:00:00Z", True),
        b'{"specversion":"1.0","id":"e","datacontenttype":"text/plain","data":'
        + msgspec.json.encode(export_line(7, "2026-01-10T08:00:00Z").decode())
        + b"}",  # the same through Dapr
    ]


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]]]] = {
    "codec": (check_codec, seeds_codec),
    "trace": (check_trace, seeds_trace),
    "intake": (check_intake, seeds_intake),
}
