"""decision-log-archiver core (pure): a decision → an archive row, and the schema.

The archive schema lives here so the sink, the docs and the tests share it.

Table ``decisions`` (one row per decision id; a redelivered or re-sent
decision replaces its row with identical values, so it is stored once):

==================  ===========  ==============================================
column              type         meaning
==================  ===========  ==============================================
id                  VARCHAR PK   decision id (Gatekeeper ``decisionId``)
time                TIMESTAMPTZ  event time of the decision (UTC)
time_ns             BIGINT       the same, ns since the epoch (exact)
source              VARCHAR      anomaly | throttle | gatekeeper | self_test …
event_type          VARCHAR      anomaly | throttle | audit_violation | webhook_violation …
action              VARCHAR      alert | suppress | throttle | dryrun | deny | warn …
rule                VARCHAR      rule id, or ``<constraintKind>/<constraintName>``
message             VARCHAR      human-readable reason
severity            VARCHAR      for Vigil's own decisions
resource_kind       VARCHAR      Kubernetes resource (Gatekeeper)
resource_namespace  VARCHAR
resource_name       VARCHAR
image_name          VARCHAR      workload fields (Vigil's own decisions)
image_tag           VARCHAR
container_id        VARCHAR
pod                 VARCHAR
audit_id            VARCHAR      audit run (its RFC3339 start time), for audit violations
count               BIGINT       decisions folded into this one (throttling, dedup)
input               JSON         the admission/audit input object
details             JSON         violation details
stream_seq          BIGINT       DECISIONS stream sequence the row was written from
==================  ===========  ==============================================

Table ``positions (stream PK, seq)``: the highest stream sequence whose
decisions are committed, written in the same transaction as the rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from contracts.codec import encode_json
from contracts.decisions import Decision

TABLE = "decisions"
POSITIONS = "positions"

COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "VARCHAR PRIMARY KEY"),
    ("time", "TIMESTAMPTZ"),
    ("time_ns", "BIGINT"),
    ("source", "VARCHAR"),
    ("event_type", "VARCHAR"),
    ("action", "VARCHAR"),
    ("rule", "VARCHAR"),
    ("message", "VARCHAR"),
    ("severity", "VARCHAR"),
    ("resource_kind", "VARCHAR"),
    ("resource_namespace", "VARCHAR"),
    ("resource_name", "VARCHAR"),
    ("image_name", "VARCHAR"),
    ("image_tag", "VARCHAR"),
    ("container_id", "VARCHAR"),
    ("pod", "VARCHAR"),
    ("audit_id", "VARCHAR"),
    ("count", "BIGINT"),
    ("input", "JSON"),
    ("details", "JSON"),
    ("stream_seq", "BIGINT"),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def create_statements() -> list[str]:
    cols = ", ".join(f"{name} {sql}" for name, sql in COLUMNS)
    return [
        f"CREATE TABLE IF NOT EXISTS {TABLE} ({cols})",
        f"CREATE TABLE IF NOT EXISTS {POSITIONS} (stream VARCHAR PRIMARY KEY, seq BIGINT)",
    ]


def _json(value: Any) -> str | None:
    return None if value is None else encode_json(value).decode()


def to_row(decision: Decision, stream_seq: int) -> tuple[Any, ...]:
    """The row for one decision, in :data:`COLUMNS` order."""
    return (
        decision.id,
        _EPOCH + timedelta(microseconds=decision.time // 1000),
        decision.time,
        decision.source,
        decision.event_type,
        decision.action,
        decision.rule,
        decision.message,
        decision.severity,
        decision.resource_kind,
        decision.resource_namespace,
        decision.resource_name,
        decision.image_name,
        decision.image_tag,
        decision.container_id,
        decision.pod,
        decision.audit_id,
        decision.count,
        _json(decision.input),
        _json(decision.details),
        stream_seq,
    )


def stage(staged: dict[str, tuple[Any, ...]], decision: Decision, stream_seq: int) -> None:
    """Add a row to a batch keyed by id: one upsert may not touch the same key twice."""
    staged[decision.id] = to_row(decision, stream_seq)
