"""Decisions (DECISIONS stream, JSON): every security verdict, Vigil's own and
external policy engines', archived exactly once by decision id.

External decisions arrive in Gatekeeper's decision-log shape
(:class:`GatekeeperDecision`, camelCase as in the seed) through the intake
and are normalised into :class:`Decision`. Audit runs are bracketed by
:class:`AuditStarted` / :class:`AuditFinished` markers.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import Struct, field

DecisionSource = Literal["anomaly", "throttle", "gatekeeper", "intake", "self_test"]


class Decision(Struct, frozen=True, kw_only=True, tag_field="kind", tag="decision.v1", omit_defaults=True):
    id: str
    time: int
    source: str
    event_type: str  # anomaly | throttle | audit_violation | webhook_violation | …
    action: str = ""  # alert | suppress | dedup | throttle | dryrun | deny | warn
    rule: str = ""  # rule id, or constraint kind/name
    message: str = ""
    severity: str = ""
    resource_kind: str = ""
    resource_namespace: str = ""
    resource_name: str = ""
    image_name: str = ""
    image_tag: str = ""
    container_id: str = ""
    pod: str = ""
    audit_id: str = ""
    count: int = 1
    input: Any = None
    details: Any = None


class GatekeeperDecision(Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """One line of Gatekeeper's decision log, as proposed in the seed."""

    timeStamp: str
    decisionId: str
    message: str = ""
    eventType: Literal["audit_violation", "webhook_violation"]
    constraintKind: str = ""
    constraintName: str = ""
    constraintAction: Literal["dryrun", "deny", "warn"] = "deny"
    resourceKind: str = ""
    resourceNamespace: str = ""
    resourceName: str = ""
    input: Any = None
    details: Any = None
    auditId: str = ""


class GatekeeperAuditEvent(Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """An audit run marker line on the intake: ``eventType`` audit_started or
    audit_finished, ``auditId`` = the run's start time (RFC3339), as Gatekeeper
    names its audit runs."""

    eventType: Literal["audit_started", "audit_finished"]
    auditId: str
    timeStamp: str = ""  # default: the audit id (the run's start time)
    violations: int | None = None  # audit_finished: violations the run found, when known


class AuditStarted(Struct, frozen=True, kw_only=True, tag_field="kind", tag="audit_started.v1"):
    audit_id: str  # RFC3339 start time of the run, as Gatekeeper names it
    time: int
    id: str = ""


class AuditFinished(Struct, frozen=True, kw_only=True, tag_field="kind", tag="audit_finished.v1"):
    audit_id: str
    time: int
    id: str = ""
    violations: int | None = None


DecisionMessage = Decision | AuditStarted | AuditFinished

decision_decoder = msgspec.json.Decoder(DecisionMessage)


class DecisionBatch(Struct, frozen=True, kw_only=True, tag_field="kind", tag="decisions.v1"):
    """Several decision messages in one bus message, in order: what a producer with many
    at once publishes (the intake, a socket read's worth of lines), so the per-message
    cost of the bus is paid once for all of them. ``id`` (the ``Nats-Msg-Id``) is
    derived from the messages' ids; consumers treat each entry as if it had come alone
    (the archive is idempotent by decision id, the audit files by decision id per run)."""

    id: str
    messages: list[DecisionMessage]


class _BatchEntries(Struct, frozen=True, tag_field="kind", tag="decisions.v1"):
    messages: list[msgspec.Raw]


_entries_decoder = msgspec.json.Decoder(_BatchEntries)


def batch_entries(data: bytes) -> list[bytes] | None:
    """The entries of a :class:`DecisionBatch` payload as raw JSON, each readable as one
    message; ``None`` if ``data`` is no batch (then it is one message, or invalid input
    for the reader to reject)."""
    try:
        return [bytes(raw) for raw in _entries_decoder.decode(data).messages]
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None


class DeadLetter(Struct, frozen=True, kw_only=True, tag_field="kind", tag="dead_letter.v1"):
    """A message a service could not use, with the reason. Never silently dropped."""

    id: str
    service: str
    reason: str
    subject: str = ""
    stream: str = ""
    stream_seq: int = 0
    payload: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Heartbeat(Struct, frozen=True, kw_only=True, tag="heartbeat.v1"):
    """Liveness and counters of one service instance (KV bucket ``vigil_heartbeats``)."""

    service: str
    instance: str
    host: str
    pid: int
    started: float  # wall clock, seconds: an operational fact, not event time
    updated: float
    position: int = 0  # last input stream sequence applied
    counters: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)  # a few examples behind a counter (ids, paths)
    sources: list[str] = field(default_factory=list)  # where the instance reads from (collector: runtimes)
