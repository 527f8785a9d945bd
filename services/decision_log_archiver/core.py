"""decision-log-archiver core (pure): a decision → an archive row.

The archive schema lives here so the sink, the docs and the tests share it.
"""

from __future__ import annotations

from typing import Any

from contracts.codec import encode_json
from contracts.decisions import Decision

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


def _json(value: Any) -> str | None:
    return None if value is None else encode_json(value).decode()


def to_row(decision: Decision, stream_seq: int) -> tuple[Any, ...]:
    from datetime import datetime, timezone

    return (
        decision.id,
        datetime.fromtimestamp(decision.time / 1e9, tz=timezone.utc),
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
