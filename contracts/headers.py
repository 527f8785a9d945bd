"""The NATS headers Vigil's messages carry, as Structs so their JSON Schema comes
from msgspec like every other contract (docs/asyncapi.yaml: each message's ``headers``).

Nobody decodes headers through these Structs (nats-py hands them over as a dict);
they state what a reader can rely on:

- ``Nats-Msg-Id`` on every message a Vigil program publishes: deterministic, derived
  from the input it answers (or the batch's events), so JetStream drops a republished
  duplicate within its window (services/runtime/bus.py ``Publisher.publish``).
- ``traceparent`` (W3C Trace Context) when the publisher traced the message; services
  pass their input's on to their outputs.
- On an EventBatch, :data:`contracts.events.MAX_TIME_HEADER` always and
  :data:`contracts.events.EVENTS_HEADER` when the collector may hold it (collector/publisher.py).
"""

from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType

from contracts.events import EVENTS_HEADER, MAX_TIME_HEADER

MSG_ID_HEADER = "Nats-Msg-Id"
TRACEPARENT_HEADER = "traceparent"

_MsgId = Annotated[
    str,
    Meta(
        min_length=1,
        description="deterministic id of the message (derived from its input): JetStream drops a duplicate",
    ),
]
_TraceParent = Annotated[
    str,
    Meta(
        pattern="^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        description="W3C Trace Context of the span that published it, when traced",
    ),
]
_Decimal = Annotated[str, Meta(pattern="^[0-9]+$")]


class Headers(Struct, frozen=True, kw_only=True, rename={"msg_id": MSG_ID_HEADER}):
    """Headers of every message Vigil publishes."""

    msg_id: _MsgId
    traceparent: _TraceParent | UnsetType = UNSET  # absent when not traced


_BATCH_NAMES = {"msg_id": MSG_ID_HEADER, "max_time": MAX_TIME_HEADER, "events": EVENTS_HEADER}


class EventBatchHeaders(Headers, frozen=True, kw_only=True, rename=_BATCH_NAMES):
    """Headers of an EventBatch (msgpack): what a reader needs without decoding it."""

    max_time: Annotated[_Decimal, Meta(description="largest event time in the batch, ns since the epoch (decimal)")]
    # absent unless the collector may hold the batch
    events: Annotated[_Decimal, Meta(description="number of events in the batch (decimal)")] | UnsetType = UNSET


class ExternalHeaders(Struct, frozen=True, kw_only=True, rename={"msg_id": MSG_ID_HEADER}):
    """Headers of a message published by a program outside Vigil (Gatekeeper, Dapr):
    a ``Nats-Msg-Id`` when it sets one (Dapr's pubsub.jetstream does: the CloudEvent id)."""

    msg_id: _MsgId | UnsetType = UNSET
    traceparent: _TraceParent | UnsetType = UNSET
