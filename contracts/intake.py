"""Reading external decisions (pure): one JSON document → a contract message, or a reason.

Every reader of external decisions calls :func:`normalise` — the intake's socket and
directory follower, the decision-log-archiver and the audit-report-writer on
``vigil.decisions.intake`` — so a decision means the same whichever way it came.

Accepted shapes (one JSON object):

- **Gatekeeper's violation export as it ships** (:class:`ExportMsg`, the lines of its
  disk driver's files): ``violation_audited`` and ``violation_admission`` → a
  :class:`Decision` with every field Gatekeeper sends; the run markers ``{"id": <run>,
  "message": "audit is started"|"audit is completed"}`` → :class:`AuditStarted` /
  :class:`AuditFinished`.
- **The same wrapped by Dapr** (a ``DaprCloudEvent``, its ``pubsub.jetstream``
  component): the envelope's ``data`` (a JSON string, an object, or ``data_base64``)
  is read as above.
- **The decision log proposed in the seed** (:class:`GatekeeperDecision`,
  ``timeStamp, decisionId, …``) and its markers (:class:`GatekeeperAuditEvent`).
- **Vigil's own tagged messages** (``"kind": "decision.v1"`` …), passed through.

Decision identity of an exported violation (it carries no decision id: an audit
``id`` is the run's start time, on every line of the run; an admission ``id`` is the
request's uid, shared by all its violations): ``gk:`` + the first 32 hex digits of
the SHA-256 of the fields that make a violation unique — event type, ``id``, the
admission ``timestamp``, the constraint (group, version, kind, namespace, name), the
resource (group, API version, kind, namespace, name), the message, the enforcement
action(s) and the details (keys sorted). The same violation read again (a file
re-read, a line re-sent, a message Dapr delivers twice) gets the same id and is
stored once; two violations differing in any of those fields never share one.
Labels and annotations describe the resource and the constraint, they do not tell
two violations apart.

Times: an audit violation carries none but its run's start (its ``id``); an
admission violation has ``timestamp``; a run's completion marker carries no time
either, so the finished run is stamped with its start time.

Invariants: :func:`normalise` never raises, whatever the bytes; the same bytes always
give the same result (no clock, no randomness); a rejected document carries a short
reason and a counter key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import msgspec

from contracts.decisions import (
    AuditFinished,
    AuditStarted,
    Decision,
    ExportMsg,
    GatekeeperAuditEvent,
    GatekeeperDecision,
    decision_decoder,
)

MAX_ID_CHARS = 512
AUDITED = "violation_audited"
ADMISSION = "violation_admission"
AUDIT_STARTED = "audit is started"
AUDIT_COMPLETED = "audit is completed"
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$")
_SEED_MARKERS = ("audit_started", "audit_finished")
_SEED_EVENTS = ("audit_violation", "webhook_violation")
_TAGS = frozenset(tp.__struct_config__.tag for tp in (Decision, AuditStarted, AuditFinished))


class _Envelope(msgspec.Struct):
    """What :func:`normalise` reads of a :class:`DaprCloudEvent`: its data, undecoded."""

    specversion: str
    data: msgspec.Raw = msgspec.Raw()
    data_base64: str = ""


class _Probe(msgspec.Struct):
    """Just enough of a document to pick its shape."""

    kind: Any = None
    eventType: Any = None
    message: Any = None
    decisionId: Any = None
    specversion: Any = None


_probe = msgspec.json.Decoder(_Probe)
_seed = msgspec.json.Decoder(GatekeeperDecision)
_seed_marker = msgspec.json.Decoder(GatekeeperAuditEvent)
_export = msgspec.json.Decoder(ExportMsg)
_cloud_event = msgspec.json.Decoder(_Envelope)
_canonical = msgspec.json.Encoder(order="sorted")


@dataclass(frozen=True)
class Accepted:
    message: Decision | AuditStarted | AuditFinished
    msg_id: str  # Nats-Msg-Id: JetStream drops a second message with the same decision id


@dataclass(frozen=True)
class Rejected:
    reason: str
    kind: str  # counter key: invalid_utf8 | invalid_json | not_an_object | invalid_fields | too_long | empty


Result = Accepted | Rejected


@lru_cache(maxsize=4096)  # pure: every line of an audit run, every violation of a request, has the same time
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


def too_long(limit: int) -> Rejected:
    return Rejected(f"line longer than {limit} bytes", "too_long")


def normalise(data: bytes) -> Result:
    """Validate one document (a line without its newline) and normalise it; never raises."""
    if not data.strip():
        return Rejected("empty line", "empty")
    try:
        message = decision_decoder.decode(data)  # fast path: Vigil's tagged JSON
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return _slow_path(data, envelope=True)
    return _check(message)


def _slow_path(data: bytes, envelope: bool) -> Result:
    try:
        probe = _probe.decode(data)
    except UnicodeDecodeError:
        return Rejected("line is not valid UTF-8", "invalid_utf8")
    except msgspec.ValidationError:
        return Rejected("line is not a JSON object", "not_an_object")
    except msgspec.DecodeError as exc:
        return Rejected(f"invalid JSON: {exc}", "invalid_json")
    try:
        return _by_shape(probe, data, envelope)
    except UnicodeDecodeError:
        return Rejected("line is not valid UTF-8", "invalid_utf8")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Rejected(str(exc), "invalid_fields")


def _by_shape(probe: _Probe, data: bytes, envelope: bool) -> Result:
    """Pick the reader by the fields present (an ExportMsg's ``kind`` is a constraint kind,
    never one of Vigil's tags)."""
    if probe.specversion is not None:
        if not envelope:
            return _invalid("a CloudEvent inside a CloudEvent")
        return _from_cloud_event(_cloud_event.decode(data))
    if isinstance(probe.kind, str) and probe.kind in _TAGS:
        return _check(decision_decoder.decode(data))
    if probe.eventType in _SEED_MARKERS:
        return _from_seed_marker(_seed_marker.decode(data))
    if probe.eventType in _SEED_EVENTS or probe.decisionId is not None:
        return _from_seed(_seed.decode(data))
    if probe.eventType in (AUDITED, ADMISSION) or probe.message in (AUDIT_STARTED, AUDIT_COMPLETED):
        return _from_export(_export.decode(data))
    if probe.eventType is None:
        return _invalid(
            f"no eventType, and message {str(probe.message)[:40]!r} is not {AUDIT_STARTED!r} or {AUDIT_COMPLETED!r}"
        )
    return _invalid(
        f"eventType {str(probe.eventType)[:40]!r} is none of {AUDITED}, {ADMISSION} (Gatekeeper's export), "
        f"{', '.join(_SEED_EVENTS)} (the proposed decision log)"
    )


def _invalid(reason: str) -> Rejected:
    return Rejected(reason, "invalid_fields")


_RUN_ID = "must be an RFC3339 time (the audit run's start)"


def _check(message: Decision | AuditStarted | AuditFinished) -> Result:
    if isinstance(message, Decision):
        if not message.id or len(message.id) > MAX_ID_CHARS:
            return _invalid(f"id must be 1..{MAX_ID_CHARS} characters")
        if message.audit_id and parse_rfc3339(message.audit_id) is None:
            return _invalid(f"audit_id {_RUN_ID}")
    elif parse_rfc3339(message.audit_id) is None:
        return _invalid(f"audit_id {_RUN_ID}")
    return Accepted(message, msg_id(message))


# --- Gatekeeper's export as it ships (pkg/export/util.ExportMsg) -------------------------


def _from_export(m: ExportMsg) -> Result:
    if m.eventType == AUDITED:
        return _audited(m)
    if m.eventType == ADMISSION:
        return _admission(m)
    if m.eventType:
        return _invalid(f"eventType {m.eventType[:64]!r} is not {AUDITED} or {ADMISSION}")
    return _export_marker(m)


def _export_marker(m: ExportMsg) -> Result:
    started = parse_rfc3339(m.id)
    if started is None:
        return _invalid(f"id of an audit run marker {_RUN_ID}: {m.id[:64]!r}")
    message: AuditStarted | AuditFinished
    if m.message == AUDIT_STARTED:
        message = AuditStarted(audit_id=m.id, time=started)
    else:
        message = AuditFinished(audit_id=m.id, time=started)  # the marker carries no end time
    return Accepted(message, msg_id(message))


def _audited(m: ExportMsg) -> Result:
    started = parse_rfc3339(m.id)
    if started is None:
        return _invalid(f"id of a {AUDITED} {_RUN_ID}: {m.id[:64]!r}")
    return _accept(_decision(m, started, audit_id=m.id))


def _admission(m: ExportMsg) -> Result:
    if not m.id:
        return _invalid(f"id of a {ADMISSION} (the request's uid) is empty")
    time = parse_rfc3339(m.timestamp or m.id)
    if time is None:
        return _invalid(f"timestamp of a {ADMISSION} is not an RFC3339 time: {m.timestamp[:64]!r}")
    request = {
        "request_uid": m.id,
        "operation": m.operation,
        "request_resource": m.requestResource,
        "request_subresource": m.requestSubresource,
        "request_username": m.requestUsername,
        "request_user_uid": m.requestUserUID,
        "request_user_groups": tuple(m.requestUserGroups or ()),
        "dry_run": m.dryRun,
    }
    return _accept(_decision(m, time, **request))


def _decision(m: ExportMsg, time: int, **extra: Any) -> Decision:
    return Decision(
        id=export_decision_id(m),
        time=time,
        source="gatekeeper",
        event_type=m.eventType,
        action=m.enforcementAction,
        rule=f"{m.kind}/{m.name}" if m.kind or m.name else "",
        message=m.message,
        resource_kind=m.resourceKind,
        resource_namespace=m.resourceNamespace,
        resource_name=m.resourceName,
        details=m.details,
        constraint_group=m.group,
        constraint_version=m.version,
        constraint_kind=m.kind,
        constraint_name=m.name,
        constraint_namespace=m.namespace,
        enforcement_actions=tuple(m.enforcementActions or ()),
        constraint_annotations=m.constraintAnnotations or {},
        resource_group=m.resourceGroup,
        resource_api_version=m.resourceAPIVersion,
        resource_labels=m.resourceLabels or {},
        **extra,
    )


def export_decision_id(m: ExportMsg) -> str:
    """The decision id of an exported violation: a digest of what makes it unique (module doc)."""
    key = (
        m.eventType, m.id, m.timestamp,
        m.group, m.version, m.kind, m.namespace, m.name,
        m.resourceGroup, m.resourceAPIVersion, m.resourceKind, m.resourceNamespace, m.resourceName,
        m.message, m.enforcementAction, m.enforcementActions or [], m.details,
    )  # fmt: skip
    return "gk:" + hashlib.sha256(_canonical.encode(key)).hexdigest()[:32]


def _accept(decision: Decision) -> Accepted:
    return Accepted(decision, msg_id(decision))


# --- Dapr's CloudEvent envelope ------------------------------------------------------------


def _from_cloud_event(event: _Envelope) -> Result:
    """Read the envelope's data as a document of its own (one envelope deep)."""
    inner = _event_data(event)
    if isinstance(inner, Rejected):
        return inner
    if not inner.strip():
        return _invalid("CloudEvent without data")
    try:
        message = decision_decoder.decode(inner)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return _slow_path(inner, envelope=False)
    return _check(message)


def _event_data(event: _Envelope) -> bytes | Rejected:
    raw = bytes(event.data)
    if raw.startswith(b'"'):  # text/plain: the JSON document as a string (Gatekeeper's Dapr driver)
        return msgspec.json.decode(raw, type=str).encode()
    if raw and raw != b"null":
        return raw  # application/json: the document itself
    try:
        return base64.b64decode(event.data_base64, validate=True)
    except (binascii.Error, ValueError):
        return _invalid("CloudEvent data_base64 is not base64")


# --- the decision log proposed in the seed -----------------------------------------------


def _from_seed(g: GatekeeperDecision) -> Result:
    if not g.decisionId or len(g.decisionId) > MAX_ID_CHARS:
        return _invalid(f"decisionId must be 1..{MAX_ID_CHARS} characters")
    time = parse_rfc3339(g.timeStamp)
    if time is None:
        return _invalid(f"timeStamp is not an RFC3339 time: {g.timeStamp[:64]!r}")
    if g.auditId and parse_rfc3339(g.auditId) is None:
        return _invalid(f"auditId {_RUN_ID}")
    rule = f"{g.constraintKind}/{g.constraintName}" if g.constraintKind or g.constraintName else ""
    return _accept(
        Decision(
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
            constraint_kind=g.constraintKind,
            constraint_name=g.constraintName,
        )
    )


def _from_seed_marker(m: GatekeeperAuditEvent) -> Result:
    started = parse_rfc3339(m.auditId)
    if started is None:
        return _invalid(f"auditId {_RUN_ID}")
    time = parse_rfc3339(m.timeStamp) if m.timeStamp else started
    if time is None:
        return _invalid(f"timeStamp is not an RFC3339 time: {m.timeStamp[:64]!r}")
    message: AuditStarted | AuditFinished
    if m.eventType == "audit_started":
        message = AuditStarted(audit_id=m.auditId, time=time)
    else:
        message = AuditFinished(audit_id=m.auditId, time=time, violations=m.violations)
    return Accepted(message, msg_id(message))


__all__ = [
    "ADMISSION",
    "AUDITED",
    "Accepted",
    "Rejected",
    "Result",
    "export_decision_id",
    "msg_id",
    "normalise",
    "parse_rfc3339",
    "too_long",
]
