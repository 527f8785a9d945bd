"""Decisions (DECISIONS stream, JSON): every security verdict, Vigil's own and
external policy engines', archived exactly once by decision id.

External decisions arrive in the shapes Gatekeeper sends — its violation export
as it ships (:class:`ExportMsg`, from the disk driver's files or wrapped by Dapr
in a :class:`DaprCloudEvent`) and the decision log proposed in the seed
(:class:`GatekeeperDecision`) — and are normalised into :class:`Decision` by
:func:`contracts.intake.normalise`. Audit runs are bracketed by
:class:`AuditStarted` / :class:`AuditFinished` markers.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import Struct, field

from contracts.events import Container

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
    # Gatekeeper's violation export (ExportMsg) as it ships: the constraint, …
    constraint_group: str = ""
    constraint_version: str = ""
    constraint_kind: str = ""
    constraint_name: str = ""
    constraint_namespace: str = ""
    enforcement_actions: tuple[str, ...] = ()  # the scoped actions of a `scoped` enforcement action
    constraint_annotations: dict[str, str] = field(default_factory=dict)
    # … the resource (kind, namespace and name above) …
    resource_group: str = ""
    resource_api_version: str = ""
    resource_labels: dict[str, str] = field(default_factory=dict)
    # … and, for admission violations, the request
    request_uid: str = ""  # the AdmissionReview's uid (Gatekeeper's `id` of a violation_admission)
    operation: str = ""  # CREATE | UPDATE | DELETE | CONNECT
    request_resource: str = ""
    request_subresource: str = ""
    request_username: str = ""
    request_user_uid: str = ""
    request_user_groups: tuple[str, ...] = ()
    dry_run: bool | None = None  # admission: the request's dryRun; None for other decisions


def about_container(
    container: Container, *, image_name: str | None = None, image_tag: str | None = None, **fields: Any
) -> Decision:
    """A Vigil verdict about one container (anomaly, throttle): the decision's resource
    is the container (kind ``Container``, its namespace and name), with its image
    (``image_name``/``image_tag`` when the caller's differ, e.g. a profile's version
    tag), id and pod; ``fields`` are the rest of the :class:`Decision`."""
    return Decision(
        resource_kind="Container",
        resource_namespace=container.namespace,
        resource_name=container.name,
        image_name=container.image_name if image_name is None else image_name,
        image_tag=container.image_tag if image_tag is None else image_tag,
        container_id=container.id,
        pod=container.pod,
        **fields,
    )


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


class ExportMsg(Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """One message of Gatekeeper's violation export as it ships (``pkg/export/util.ExportMsg``):
    a line of the disk driver's files, or the ``data`` of a Dapr CloudEvent. ``eventType``
    ``violation_audited`` (``id`` = the audit run's start time, RFC3339, on every line of the
    run) or ``violation_admission`` (``id`` = the admission request's uid, shared by its
    violations; ``timestamp`` = when the request was evaluated, RFC3339Nano). With no
    ``eventType``, ``message`` ``audit is started`` / ``audit is completed`` marks the run ``id``."""

    id: str = ""
    details: Any = None
    eventType: str = ""
    group: str = ""  # the constraint's API group, version, kind, name, namespace
    version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""
    message: str = ""
    enforcementAction: str = ""  # deny | dryrun | warn | scoped
    enforcementActions: list[str] | None = None  # a scoped constraint's actions
    constraintAnnotations: dict[str, str] | None = None
    resourceGroup: str = ""
    resourceAPIVersion: str = ""
    resourceKind: str = ""
    resourceNamespace: str = ""
    resourceName: str = ""
    resourceLabels: dict[str, str] | None = None
    timestamp: str = ""  # admission only from here on
    operation: str = ""
    requestResource: str = ""
    requestSubresource: str = ""
    requestUsername: str = ""
    requestUserUID: str = ""
    requestUserGroups: list[str] | None = None
    dryRun: bool | None = None


class DaprCloudEvent(Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """The CloudEvents 1.0 envelope Dapr wraps a published message in (components-contrib
    ``pubsub/envelope.go``); its ``pubsub.jetstream`` component publishes it on the topic's
    subject with ``Nats-Msg-Id`` = ``id``. Gatekeeper's Dapr driver publishes the ExportMsg
    JSON with no content type, so ``data`` is that JSON as a string (``text/plain``); an
    object (``application/json``) or ``data_base64`` is read as well."""

    specversion: str
    id: str = ""
    source: str = ""
    type: str = ""
    datacontenttype: str = ""
    data: Any = None
    data_base64: str = ""
    subject: str = ""
    topic: str = ""
    pubsubname: str = ""
    traceid: str = ""
    traceparent: str = ""
    tracestate: str = ""
    time: str = ""
    expiration: str = ""


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
