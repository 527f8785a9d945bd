"""Every message type round-trips msgpack and JSON; the codecs reject what is
not their contract; the trace codec round-trips (Hypothesis, over the types'
own hints, so new contracts are covered without new tests)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contracts
from contracts import codec, trace
from contracts.events import RAW_EVENT_TYPES, EventBatch
from tests.contract.strategies import struct

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")


def message_types() -> list[type[msgspec.Struct]]:
    found: dict[str, type[msgspec.Struct]] = {}
    for mod_info in pkgutil.iter_modules(contracts.__path__):
        module = importlib.import_module(f"contracts.{mod_info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, msgspec.Struct)
                and obj.__module__ == module.__name__
                and obj.__struct_config__.tag
                and not obj.__name__.startswith("_")
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


MESSAGE_TYPES = message_types()


def test_every_message_type_is_frozen_tagged_and_versioned() -> None:
    assert len(MESSAGE_TYPES) >= 25
    for tp in MESSAGE_TYPES:
        cfg = tp.__struct_config__
        assert cfg.frozen, tp
        assert isinstance(cfg.tag, str) and ".v" in cfg.tag, (tp, cfg.tag)


def test_tags_are_unique() -> None:
    tags = [(tp.__struct_config__.tag_field, tp.__struct_config__.tag) for tp in MESSAGE_TYPES]
    assert len(tags) == len(set(tags))


@pytest.mark.parametrize("tp", MESSAGE_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trips_msgpack_and_json(tp: type[msgspec.Struct], data: Any) -> None:
    value = data.draw(struct(tp))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=tp) == value
    assert msgspec.json.decode(msgspec.json.encode(value), type=tp) == value


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(*(struct(t) for t in RAW_EVENT_TYPES)), max_size=5))
def test_batch_codec_round_trips(events: list[Any]) -> None:
    batch = EventBatch(node="n", boot="b", first_seq=7, partition=1, events=events)
    assert codec.decode_batch(codec.encode_batch(batch)) == batch


@settings(max_examples=200, deadline=None)
@given(st.one_of(*(struct(t) for t in RAW_EVENT_TYPES)))
def test_trace_codec_round_trips_to_microseconds(event: Any) -> None:
    event = msgspec.structs.replace(event, time=abs(event.time) % (2**62) // 1000 * 1000)
    line = trace.encode_line(event)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert trace.decode_line(line) == event


def test_trace_uses_bare_kinds_and_rfc3339() -> None:
    line = (
        b'{"kind":"exec","time":"2026-01-01T00:00:00.000001Z","node":"node-1",'
        b'"container":{"id":"c1","image_name":"nginx","image_tag":"1.25"},'
        b'"process":{"pid":100,"ppid":1,"uid":0,"comm":"getconf","path":"/usr/bin/getconf",'
        b'"argv":["getconf","-a"],"ancestors":["/usr/bin/containerd-shim","/bin/sh"]}}'
    )
    event = trace.decode_line(line)
    assert event.time == 1_767_225_600_000_001_000
    assert event.process.ancestors == ["/usr/bin/containerd-shim", "/bin/sh"]
    obj = msgspec.json.decode(trace.encode_line(event))
    assert obj["kind"] == "exec" and obj["time"] == "2026-01-01T00:00:00.000001Z"


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"{", "truncated"),
        (b"[1]", "expected a JSON object"),
        (b'{"kind":"teleport","time":"2026-01-01T00:00:00Z"}', "unknown kind"),
        (b'{"kind":"tick"}', "missing time"),
        (b'{"kind":"exec","time":"yesterday","container":{"id":"c"},"process":{"pid":1}}', "Invalid isoformat"),
        (
            b'{"kind":"exec","time":"2026-01-01T00:00:00Z","container":{"id":"c"},"process":{"pid":"x"}}',
            "Expected `int`",
        ),
    ],
)
def test_trace_errors_name_the_line_and_reason(line: bytes, reason: str) -> None:
    with pytest.raises(trace.TraceError) as info:
        list(trace.read([b"", b"# comment", line]))
    assert info.value.line == 3
    assert reason in info.value.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoders_reject_garbage_with_a_contract_error(data: bytes) -> None:
    for decode in (
        codec.decode_batch,
        codec.decode_drift,
        *(lambda d, k=k: codec.decode_json(k, d) for k in codec.JSON_TYPES),
    ):
        try:
            decode(data)
        except codec.ContractError as exc:
            assert str(exc)


def test_bus_reference_is_current() -> None:
    from contracts import reference

    assert reference.target().read_text() == reference.render(), "run: python -m contracts.reference"


def test_bus_reference_documents_every_message_type() -> None:
    from contracts import reference

    text = reference.target().read_text()
    missing = [tp.__name__ for tp in MESSAGE_TYPES if f"\n### {tp.__name__}\n" not in text]
    assert missing == [], "add them to contracts.reference.CHANNELS"
