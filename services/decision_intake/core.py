"""Decision intake core (pure): one ndjson line → a contract, or a reason.

Accepted shapes (one JSON object per line):

- Gatekeeper's decision log (the seed, camelCase): ``timeStamp, decisionId,
  message, eventType audit_violation|webhook_violation, constraintKind,
  constraintName, constraintAction, resourceKind, resourceNamespace,
  resourceName, input, details`` (+ ``auditId`` for audit violations)
  → :class:`Decision` with ``id = decisionId``, ``source = "gatekeeper"``.
- Audit run markers: ``{"eventType": "audit_started"|"audit_finished",
  "auditId": <RFC3339 run start>}`` → :class:`AuditStarted` /
  :class:`AuditFinished`.
- Vigil's own tagged messages (``"kind": "decision.v1"`` …), passed through.

Invariants: :func:`normalise` never raises, whatever the bytes; the same
bytes always give the same result (time comes from the line, never the
clock); a rejected line carries a short reason and a counter key. The socket
intake, the archiver and the audit-report-writer all call this one function,
so a payload is read the same way whether it came over the socket or NATS.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from contracts.codec import encode_decision_batch, encode_json
from contracts.decisions import (
    AuditFinished,
    AuditStarted,
    Decision,
    DecisionMessage,
    GatekeeperAuditEvent,
    GatekeeperDecision,
    decision_decoder,
)

MAX_ID_CHARS = 512
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$")
_MARKERS = ("audit_started", "audit_finished")


class _Probe(msgspec.Struct):
    """Just enough of a line to pick its shape."""

    kind: Any = None
    eventType: Any = None


_probe = msgspec.json.Decoder(_Probe)
_gatekeeper = msgspec.json.Decoder(GatekeeperDecision)
_marker = msgspec.json.Decoder(GatekeeperAuditEvent)


@dataclass(frozen=True)
class Accepted:
    message: Decision | AuditStarted | AuditFinished
    msg_id: str  # Nats-Msg-Id: JetStream drops a second line with the same decision id


@dataclass(frozen=True)
class Rejected:
    reason: str
    kind: str  # counter key: invalid_utf8 | invalid_json | not_an_object | invalid_fields | too_long | empty


Result = Accepted | Rejected


def parse_rfc3339(value: str) -> int | None:
    """RFC3339 timestamp → ns since the epoch (nanosecond fractions kept), or None."""
    m = _RFC3339.match(value)
    if m is None:
        return None
    day, clock, frac, offset = m.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        seconds = int(datetime.fromisoformat(f"{day}T{clock}{offset}").timestamp())
    except ValueError:
        return None
    return seconds * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def msg_id(message: Decision | AuditStarted | AuditFinished) -> str:
    if isinstance(message, Decision):
        return f"decision:{message.id}"
    kind = "audit_started" if isinstance(message, AuditStarted) else "audit_finished"
    return f"{kind}:{message.audit_id}"


def normalise(data: bytes) -> Result:
    """Validate one line (without its newline) and normalise it; never raises."""
    if not data.strip():
        return Rejected("empty line", "empty")
    try:
        message = decision_decoder.decode(data)  # fast path: Vigil's tagged JSON
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return _slow_path(data)
    return _check(message)


def too_long(limit: int) -> Rejected:
    return Rejected(f"line longer than {limit} bytes", "too_long")


def _slow_path(data: bytes) -> Result:
    try:
        probe = _probe.decode(data)
    except UnicodeDecodeError:
        return Rejected("line is not valid UTF-8", "invalid_utf8")
    except msgspec.ValidationError:
        return Rejected("line is not a JSON object", "not_an_object")
    except msgspec.DecodeError as exc:
        return Rejected(f"invalid JSON: {exc}", "invalid_json")
    try:
        if probe.kind is not None:
            return _check(decision_decoder.decode(data))
        if probe.eventType in _MARKERS:
            return _from_marker(_marker.decode(data))
        return _from_gatekeeper(_gatekeeper.decode(data))
    except UnicodeDecodeError:
        return Rejected("line is not valid UTF-8", "invalid_utf8")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Rejected(str(exc), "invalid_fields")


def _invalid(reason: str) -> Rejected:
    return Rejected(reason, "invalid_fields")


def _check(message: Decision | AuditStarted | AuditFinished) -> Result:
    if isinstance(message, Decision):
        if not message.id or len(message.id) > MAX_ID_CHARS:
            return _invalid(f"id must be 1..{MAX_ID_CHARS} characters")
        if message.audit_id and parse_rfc3339(message.audit_id) is None:
            return _invalid("audit_id must be an RFC3339 time (the audit run's start)")
    elif parse_rfc3339(message.audit_id) is None:
        return _invalid("audit_id must be an RFC3339 time (the audit run's start)")
    return Accepted(message, msg_id(message))


def _from_gatekeeper(g: GatekeeperDecision) -> Result:
    if not g.decisionId or len(g.decisionId) > MAX_ID_CHARS:
        return _invalid(f"decisionId must be 1..{MAX_ID_CHARS} characters")
    time = parse_rfc3339(g.timeStamp)
    if time is None:
        return _invalid(f"timeStamp is not an RFC3339 time: {g.timeStamp[:64]!r}")
    if g.auditId and parse_rfc3339(g.auditId) is None:
        return _invalid("auditId must be an RFC3339 time (the audit run's start)")
    rule = f"{g.constraintKind}/{g.constraintName}" if g.constraintKind or g.constraintName else ""
    decision = Decision(
        id=g.decisionId,
        time=time,
        source="gatekeeper",
        event_type=g.eventType,
        action=g.constraintAction,
        rule=rule,
        message=g.message,
        resource_kind=g.resourceKind,
        resource_namespace=g.resourceNamespace,
        resource_name=g.resourceName,
        audit_id=g.auditId,
        input=g.input,
        details=g.details,
    )
    return Accepted(decision, msg_id(decision))


def _from_marker(m: GatekeeperAuditEvent) -> Result:
    started = parse_rfc3339(m.auditId)
    if started is None:
        return _invalid("auditId must be an RFC3339 time (the audit run's start)")
    time = parse_rfc3339(m.timeStamp) if m.timeStamp else started
    if time is None:
        return _invalid(f"timeStamp is not an RFC3339 time: {m.timeStamp[:64]!r}")
    message: AuditStarted | AuditFinished
    if m.eventType == "audit_started":
        message = AuditStarted(audit_id=m.auditId, time=time)
    else:
        message = AuditFinished(audit_id=m.auditId, time=time, violations=m.violations)
    return Accepted(message, msg_id(message))


MAX_BATCH_MESSAGES = 1000


class Publication(NamedTuple):
    """One bus message the intake publishes: one accepted line as it is, or several as a
    DecisionBatch; ``count`` lines are answered with its ack."""

    msg_id: str
    data: bytes
    count: int


def publications(accepted: list[Accepted], max_bytes: int) -> list[Publication]:
    """The accepted lines of one read, in order, as few bus messages as fit: consecutive
    lines go in one DecisionBatch of at most ``max_bytes`` and :data:`MAX_BATCH_MESSAGES`
    (a lone line, or one too large to share, goes alone, as it was). A batch's id is a
    hash of its lines' ids, so the same lines sent again are stored once; any other
    re-send is stored again and is harmless downstream (the archive and the audit files
    keep a decision once by its id)."""
    out: list[Publication] = []
    group: list[tuple[str, bytes]] = []
    size = 0

    def close() -> None:
        if len(group) == 1:
            out.append(Publication(group[0][0], group[0][1], 1))
        elif group:
            digest = hashlib.sha256("\n".join(i for i, _ in group).encode()).hexdigest()[:32]
            out.append(
                Publication(
                    f"batch:{digest}", encode_decision_batch(f"batch:{digest}", [d for _, d in group]), len(group)
                )
            )
        group.clear()

    for result in accepted:
        data = encode_json(result.message)
        if group and (size + len(data) + 1 > max_bytes or len(group) >= MAX_BATCH_MESSAGES):
            close()
            size = 0
        group.append((result.msg_id, data))
        size += len(data) + 1
    close()
    return out


def split_lines(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines of a read buffer (newline stripped, ``\\r`` too) and the unfinished rest."""
    *lines, rest = buffer.split(b"\n")
    return [line[:-1] if line.endswith(b"\r") else line for line in lines], rest


__all__ = [
    "Accepted",
    "DecisionMessage",
    "Publication",
    "Rejected",
    "Result",
    "normalise",
    "parse_rfc3339",
    "publications",
    "split_lines",
    "too_long",
]
