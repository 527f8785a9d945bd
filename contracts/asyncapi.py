"""Generates docs/asyncapi.yaml, the AsyncAPI 3.0 document of the whole bus.

    python -m contracts.asyncapi            # rewrite docs/asyncapi.yaml
    python -m contracts.asyncapi --check    # exit 1 if it is stale

Two sources, nothing written by hand:

1. **FastStream** draws the bus: a spec-only ``NatsBroker`` (never connected) gets
   every consumer of :data:`contracts.topology.ENDPOINTS` as a ``broker.subscriber``
   (its JetStream stream, durable, batch pull) and every output as a
   ``broker.publisher``; ``AsyncAPI(broker, schema_version="3.0.0")`` turns them into
   the servers, channels and send/receive operations
   (faststream/specification/asyncapi/v3_0_0/generate.py ``get_broker_channels``:
   a channel and an operation per subscriber address and per publisher, keyed by
   the endpoint's ``title``).
2. **msgspec** gives the messages. FastStream builds payload schemas through
   Pydantic, which cannot describe a ``msgspec.Struct``
   (faststream/specification/asyncapi/message.py ``parse_handler_params`` raises
   PydanticSchemaGenerationError; ag2ai/faststream#2101), so the spec-only endpoints
   declare no payload type and FastStream emits a placeholder message per channel.
   :func:`complete` replaces those placeholders by one message per contract type
   (the types each subject carries, :data:`contracts.reference.CHANNELS`), whose
   payload and headers (:mod:`contracts.headers`) are
   ``msgspec.json.schema_components`` under ``components/schemas``. It also adds
   what FastStream's v3 Channel leaves out: the address ``parameters`` (a TODO in
   faststream/specification/asyncapi/v3_0_0/schema/channels.py) and, as
   ``x-jetstream-*`` extensions, the stream of each channel and the durable
   consumer of each receive operation.

FastStream's ``correlationId`` (its own ``correlation_id`` header) is dropped:
Vigil's publishers do not set it.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.specification import AsyncAPI
from nats.js.api import ConsumerConfig

from contracts import events, headers, reference, subjects, topology
from contracts.subjects import ConsumerSpec

TITLE = "Vigil bus"
VERSION = importlib.metadata.version("vigil")
SERVER = "nats://localhost:4222"  # `vigil up`'s embedded server (nats.port)
SCHEMAS = "#/components/schemas/{name}"
_VARIABLE = re.compile(r"<([a-z_]+)>")

# What a variable token of an address stands for.
PARAMETERS = {
    "partition": "the image's partition: crc32(image name) % nats.partitions (contracts.subjects.partition_of)",
    "image": "the image name as one subject token, [^A-Za-z0-9_-] replaced by '_' (contracts.subjects.token)",
    "source": "who decided: anomaly, throttle, intake (external decisions)",
    "service": "the service that could not use the input",
}


@dataclass(frozen=True)
class Channel:
    """One address on the bus, the stream that stores it and the contract types it carries."""

    address: str  # reference notation: <name> a variable token
    stream: str
    types: tuple[Any, ...]
    description: str


def _tokens(pattern: str) -> list[str]:
    return pattern.split(".")


def _variable(token: str) -> bool:
    return token in ("*", ">") or bool(_VARIABLE.fullmatch(token))


def _overlaps(a: str, b: str) -> bool:
    """Whether two subject patterns (``*`` or ``<name>`` a variable token) can name one subject."""
    ta, tb = _tokens(a), _tokens(b)
    return len(ta) == len(tb) and all(x == y or _variable(x) or _variable(y) for x, y in zip(ta, tb, strict=True))


def _bus_channels() -> list[tuple[str, tuple[Any, ...], str]]:
    """The bus entries of the reference (files and KV buckets are not subjects)."""
    return [(subject, tps, what) for subject, _, tps, what in reference.CHANNELS if subject.startswith("vigil.")]


def address_of(pattern: str) -> str:
    """A filter's address in reference notation: its ``*`` named after the reference's subject."""
    for subject, _, _ in _bus_channels():
        if _overlaps(pattern, subject):
            mine, theirs = _tokens(pattern), _tokens(subject)
            return ".".join(t if t != "*" else u for t, u in zip(mine, theirs, strict=True))
    return pattern


def channel(address: str) -> Channel:
    """What an address carries: every type the reference lists on a subject it overlaps."""
    types: list[Any] = []
    what: list[str] = []
    for subject, tps, text in _bus_channels():
        if _overlaps(address, subject):
            types += [t for t in tps if t not in types]
            what.append(text)
    streams = [st.name for st in subjects.STREAMS if any(_overlaps(address, f) for f in st.subjects)]
    if not types or len(streams) != 1:
        raise ValueError(f"{address}: no contract in contracts.reference.CHANNELS or not in one stream ({streams})")
    return Channel(address, streams[0], tuple(types), "; ".join(what))


def consumer_addresses(spec: ConsumerSpec) -> tuple[str, ...]:
    """The addresses a durable reads: its filters, or its stream's subjects."""
    return tuple(address_of(f) for f in (spec.filter_subjects or subjects.stream_spec(spec.stream).subjects))


def asyncapi_address(address: str) -> str:
    """Reference notation to AsyncAPI's: ``<name>`` becomes ``{name}``."""
    return _VARIABLE.sub(r"{\1}", address)


def _key(address: str) -> str:
    return _VARIABLE.sub(r"\1", address)


# --- 1. FastStream: the broker's endpoints ---------------------------------------


async def _spec_only(body: Any) -> None:  # pragma: no cover - never called: the broker never connects
    """A subscriber's handler: its payload type is set by :func:`complete`."""


def spec_broker() -> NatsBroker:
    """Every endpoint of the topology on a broker that is never connected."""
    broker = NatsBroker(SERVER, description="NATS JetStream; every stream is file-backed, R1 or R3 (settings)")
    for ep in topology.ENDPOINTS:
        for spec in ep.consumers:
            addresses = consumer_addresses(spec)
            one = addresses[0] if len(addresses) == 1 else ""
            broker.subscriber(
                asyncapi_address(one),
                stream=JStream(spec.stream, declare=False),
                durable=spec.durable,
                config=ConsumerConfig(filter_subjects=[] if one else [asyncapi_address(a) for a in addresses]),
                pull_sub=PullSub(batch=True),
                title=f"{ep.name}:{spec.stream}",
                description=f"{ep.name}: {ep.description}",
            )(_spec_only)
        for address in ep.outputs_with_dead_letters:
            broker.publisher(
                asyncapi_address(address_of(address)),
                title=f"{ep.name}:{_key(address_of(address))}",
                description=f"{ep.name}: {ep.description}",
            )
    return broker


def faststream_document() -> dict[str, Any]:
    spec = AsyncAPI(spec_broker(), schema_version="3.0.0", title=TITLE, version=VERSION, description=_description())
    doc: dict[str, Any] = spec.to_specification().to_jsonable()
    return doc


def _description() -> str:
    lines = [
        "Every stream, subject and message of Vigil's bus, generated from `contracts/` by",
        "`python -m contracts.asyncapi` (FastStream draws the channels and operations, msgspec",
        "the schemas). Times are event time in ns since the Unix epoch (UTC). JSON subjects are",
        "for any subscriber in any language; EVENTS and DRIFT are msgpack. The request/reply",
        "endpoints (`vigil.query.decisions`, `vigil.query.profiles.<partition>`) are not in it:",
        "their payloads are not contracts yet. Streams:",
        "",
    ]
    lines += [f"- **{st.name}** `{'`, `'.join(st.subjects)}`: {st.description}" for st in subjects.STREAMS]
    return "\n".join(lines)


# --- 2. msgspec: the messages, and what FastStream's channel leaves out ------------


def _name(tp: Any) -> str:
    return str(tp.__name__)


def _external(tp: Any) -> bool:
    """Published only by programs outside Vigil (Gatekeeper's shapes): no promised headers."""
    return all(subject == subjects.INTAKE_DECISIONS for subject, tps, _ in _bus_channels() if tp in tps)


def _headers_of(tp: Any) -> Any:
    if tp is events.EventBatch:
        return headers.EventBatchHeaders
    return headers.ExternalHeaders if _external(tp) else headers.Headers


def _msgpack(tp: Any) -> bool:
    return any(enc == "msgpack" for _, enc, tps, _ in reference.CHANNELS if tp in tps)


def _discriminators(schema: Any) -> Any:
    """msgspec's OpenAPI-style ``discriminator`` object as AsyncAPI's Schema wants it, the
    property name (as faststream/specification/asyncapi/utils.py ``move_pydantic_refs`` does)."""
    if isinstance(schema, list):
        return [_discriminators(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _discriminators(v) for k, v in schema.items()}
    if isinstance(out.get("discriminator"), dict):
        out["discriminator"] = out["discriminator"]["propertyName"]
    return out


def _message(tp: Any) -> dict[str, Any]:
    doc = " ".join((tp.__doc__ or "").strip().split("\n\n")[0].split())
    msg: dict[str, Any] = {
        "name": _name(tp),
        "title": _name(tp),
        "contentType": "application/msgpack" if _msgpack(tp) else "application/json",
        "headers": {"$ref": SCHEMAS.format(name=_name(_headers_of(tp)))},
        "payload": {"$ref": SCHEMAS.format(name=_name(tp))},
    }
    if doc:
        msg["summary"] = doc
    return msg


def _channel_of(doc: dict[str, Any], key: str) -> Channel:
    return channel(re.sub(r"\{([a-z_]+)\}", r"<\1>", doc["channels"][key]["address"]))


def _consumers() -> Iterator[tuple[str, ConsumerSpec]]:
    for ep in topology.ENDPOINTS:
        for spec in ep.consumers:
            yield f"{ep.name}:{spec.stream}", spec


def _in_topology_order(items: dict[str, Any]) -> dict[str, Any]:
    """FastStream lists endpoints in set order, which changes between runs: by endpoint, then key."""
    rank = {ep.name: i for i, ep in enumerate(topology.ENDPOINTS)}
    return dict(sorted(items.items(), key=lambda kv: (rank[kv[0].split(":", 1)[0]], kv[0])))


def _complete_channel(ch: dict[str, Any], carried: Channel) -> None:
    """Its messages, parameters and stream; what it carries as its description (the
    endpoint's, FastStream's, goes to the operation)."""
    ch["description"] = carried.description
    ch["messages"] = {_name(t): {"$ref": f"#/components/messages/{_name(t)}"} for t in carried.types}
    if params := _VARIABLE.findall(carried.address):
        ch["parameters"] = {p: {"description": PARAMETERS[p]} for p in params}
    ch["x-jetstream-stream"] = carried.stream


def _complete_operation(op: dict[str, Any], endpoint: str, messages: dict[str, Any], spec: ConsumerSpec | None) -> None:
    key = op["channel"]["$ref"].rsplit("/", 1)[-1]
    op["description"] = endpoint
    op["messages"] = [{"$ref": f"#/channels/{key}/messages/{name}"} for name in messages]
    if op["action"] == "receive" and spec is not None:
        durable = spec.durable.replace(topology.PARTITION, "{partition}")
        op["x-jetstream-consumer"] = {"stream": spec.stream, "durable": durable, "pull": True, "ack": "explicit"}


def complete(doc: dict[str, Any]) -> dict[str, Any]:
    """FastStream's document with the messages, schemas, parameters and JetStream facts."""
    doc["channels"] = _in_topology_order(doc["channels"])
    doc["operations"] = _in_topology_order(doc["operations"])
    endpoints = {key: ch.get("description", "") for key, ch in doc["channels"].items()}
    types: list[Any] = []
    for key, ch in doc["channels"].items():
        carried = _channel_of(doc, key)
        types += [t for t in carried.types if t not in types]
        _complete_channel(ch, carried)
    consumers = dict(_consumers())
    for op in doc["operations"].values():
        key = op["channel"]["$ref"].rsplit("/", 1)[-1]
        spec = consumers.get(key) or consumers.get(key.rsplit(":", 1)[0])  # a split subscriber: title:address
        _complete_operation(op, endpoints[key], doc["channels"][key]["messages"], spec)
    header_types = [headers.Headers, headers.EventBatchHeaders, headers.ExternalHeaders]
    _, schemas = msgspec.json.schema_components([*types, *header_types], ref_template=SCHEMAS)
    doc["components"] = {
        "messages": {_name(t): _message(t) for t in types},
        "schemas": {name: _discriminators(schemas[name]) for name in sorted(schemas)},
    }
    return doc


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the description reads as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def render() -> str:
    text = yaml.dump(complete(faststream_document()), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return "# Generated by `python -m contracts.asyncapi` from contracts/: do not edit.\n" + text


def target() -> Path:
    return Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"


def main(argv: list[str]) -> int:
    return reference.write_or_check(target(), render(), argv, "python -m contracts.asyncapi")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


__all__ = ["PARAMETERS", "Channel", "channel", "complete", "render", "spec_broker"]
