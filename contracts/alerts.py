"""Alerts (ALERTS stream, JSON, one per message): public API for downstream
subscribers in any language.

``vigil.alerts.raw``  anomaly alerts as the anomaly-detector made them
``vigil.alerts.out``  what survives per-container throttling, plus AlertThreshold
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Struct

from contracts.events import Container, EventType, Process, RawEvent
from contracts.profiles import ProfileState

Severity = Literal["low", "medium", "high", "critical"]


class Alert(Struct, frozen=True, kw_only=True, tag_field="kind", tag="alert.v1", omit_defaults=True):
    id: str
    time: int
    rule_id: str = "anomaly_detection"
    event_type: EventType
    severity: Severity = "medium"
    title: str = ""
    container: Container
    process: Process | None = None
    lineage: list[str] = []  # executable paths, outermost first, ending with the process
    behaviour: str = ""
    event: RawEvent | None = None
    image_tag: str = ""  # profile version that made it drift
    version_state: ProfileState | None = None
    count: int = 1  # repeats folded into this alert within the dedup window
    drift_reason: str = ""  # stable_version | other_version_stable
    stable_tag: str = ""  # the version whose stable state made it drift
    event_id: str = ""  # id of the triggering raw event


class AlertThreshold(Struct, frozen=True, kw_only=True, tag_field="kind", tag="alert_threshold.v1"):
    """KubeArmor's throttling alert: this container crossed ``MaxAlertsPerSec``;
    nothing else from it is sent for ``DroppingAlertsInterval`` seconds."""

    id: str
    time: int
    container: Container
    Type: str = "SystemEvent"
    Operation: str = "AlertThreshold"
    MaxAlertsPerSec: int
    DroppingAlertsInterval: int
    Result: str = "Passed"
    rule_id: str = ""  # set when a per-rule budget (not the container budget) was crossed


AlertMessage = Alert | AlertThreshold

alert_decoder = msgspec.json.Decoder(AlertMessage)


class AlertClock(Struct, frozen=True, kw_only=True, tag_field="kind", tag="alert_clock.v1", omit_defaults=True):
    """Event time the anomaly-detector has reached on one DRIFT partition
    (``source`` = its subject) for one node (``node``: the node whose events and
    ticks made it; empty = events that name no node, and every clock from an
    older detector: every node's), published on ``vigil.alerts.clock`` so the
    throttler can close windows when no alert arrives. Not an alert: the raw
    and out subjects never carry it."""

    id: str
    time: int
    source: str
    node: str = ""


ThrottlerInput = Alert | AlertThreshold | AlertClock
