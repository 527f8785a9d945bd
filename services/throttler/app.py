"""throttler adapter: Alert on ``vigil.alerts.raw`` and AlertClock on
``vigil.alerts.clock`` in (one consumer, stream order); surviving alerts and
AlertThreshold on ``vigil.alerts.out``, throttle Decision on
``vigil.decisions.throttle`` out.

A passed alert is republished byte for byte with ``Nats-Msg-Id`` ``out:<alert
id>``. State (buckets, clocks) is snapshotted with its ALERTS position and
caught up silently from the log at start
(:class:`services.runtime.snapshots.SnapshotApp`), so a restart loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from contracts.alerts import ThrottlerInput
from contracts.codec import encode_json
from contracts.decisions import Decision
from contracts.subjects import (
    ALERTS,
    ALERTS_CLOCK,
    ALERTS_OUT,
    ALERTS_RAW,
    ConsumerSpec,
    decisions_subject,
    drift_subject,
)
from services.runtime.service import Incoming, Invalid, Outgoing
from services.runtime.settings import Settings
from services.runtime.snapshots import SnapshotApp
from services.throttler import core

DECISIONS_SUBJECT = decisions_subject("throttle")
_decoder = msgspec.json.Decoder(ThrottlerInput)
_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(core.Snapshot)


def config_from(settings: Settings) -> core.Config:
    return core.Config(
        enabled=settings.alert_throttling,
        max_per_sec=settings.max_alert_per_sec,
        throttle_sec=settings.throttle_sec,
        rule_budgets=dict(settings.max_alert_per_sec_per_rule),
        sources=tuple(drift_subject(p) for p in range(settings.nats.partitions)),
    )


class Throttler(SnapshotApp):
    name = "throttler"
    consumers = (ConsumerSpec(ALERTS, "throttler", (ALERTS_RAW, ALERTS_CLOCK)),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = config_from(settings)
        self.state = core.State()
        self.snapshot_interval = float(settings.anomaly_detector.snapshot_interval)

    def export_state(self) -> bytes:
        return _snapshot_encoder.encode(core.export(self.state))

    def restore_state(self, data: bytes) -> None:
        self.state = core.restore(_snapshot_decoder.decode(data))

    def replay(self, subject: str, data: bytes) -> None:
        core.handle(self.state, self.config, _decoder.decode(data))

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            message = _decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Invalid(f"not an alert or alert clock: {exc}") from exc
        return [self._outgoing(out, message, msg.data) for out in core.handle(self.state, self.config, message)]

    def _outgoing(self, out: core.Output, message: core.Input, data: bytes) -> Outgoing:
        if isinstance(out, Decision):
            self.counters["throttle_decisions"] += 1
            return Outgoing(DECISIONS_SUBJECT, encode_json(out), id=out.id)
        self.counters["alerts_out"] += 1
        return Outgoing(ALERTS_OUT, data if out is message else encode_json(out), id=f"out:{out.id}")


def build(settings: Settings) -> Throttler:
    return Throttler(settings)
