"""Sans-I/O codecs for every payload on the bus.

High-volume subjects (EVENTS, DRIFT) carry msgpack batches; downstream-facing
subjects carry JSON, one object per message. Decoding failures raise
:class:`ContractError` with a reason fit for a dead letter.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from contracts.alerts import AlertMessage
from contracts.decisions import DeadLetter, DecisionBatch, DecisionMessage, GatekeeperDecision, Heartbeat
from contracts.errors import VigilError
from contracts.events import EventBatch
from contracts.profiles import Command, DriftBatch, ProfileEvent

T = TypeVar("T")


class ContractError(VigilError, ValueError):
    """A payload that does not match its contract."""


_mp_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(EventBatch)
_drift_decoder = msgspec.msgpack.Decoder(DriftBatch)

JSON_TYPES: dict[str, Any] = {
    "profile_event": ProfileEvent,
    "command": Command,
    "alert": AlertMessage,
    "decision": DecisionMessage,
    "decision_batch": DecisionBatch,
    "gatekeeper_decision": GatekeeperDecision,
    "dead_letter": DeadLetter,
    "heartbeat": Heartbeat,
}
_json_decoders = {name: msgspec.json.Decoder(tp) for name, tp in JSON_TYPES.items()}


def encode_decision_batch(batch_id: str, encoded: list[bytes]) -> bytes:
    """A :class:`~contracts.decisions.DecisionBatch` from messages already encoded as JSON
    (each one is the JSON :func:`encode_json` gives): no message is encoded twice."""
    return (
        b'{"kind":"decisions.v1","id":' + _json_encoder.encode(batch_id) + b',"messages":[' + b",".join(encoded) + b"]}"
    )


def encode_batch(batch: EventBatch | DriftBatch) -> bytes:
    return _mp_encoder.encode(batch)


def decode_batch(data: bytes) -> EventBatch:
    try:
        return _batch_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:  # bad UTF-8 in a string
        raise ContractError(f"not an EventBatch: {exc}") from exc


def decode_drift(data: bytes) -> DriftBatch:
    try:
        return _drift_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:  # bad UTF-8 in a string
        raise ContractError(f"not a DriftBatch: {exc}") from exc


def encode_json(obj: Any) -> bytes:
    return _json_encoder.encode(obj)


def decode_json(kind: str, data: bytes) -> Any:
    """Decode a JSON payload as one of :data:`JSON_TYPES` (e.g. ``"alert"``)."""
    try:
        return _json_decoders[kind].decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:  # bad UTF-8 in a string
        raise ContractError(f"not a valid {kind}: {exc}") from exc
