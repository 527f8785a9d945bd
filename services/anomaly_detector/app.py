"""anomaly-detector adapter: DriftBatch (msgpack, DRIFT) in; Alert on
``vigil.alerts.raw``, Decision on ``vigil.decisions.anomaly`` and AlertClock on
``vigil.alerts.clock`` out. Every output's ``Nats-Msg-Id`` is its contract id,
which the core derives from the drift id, so a replay republishes nothing new.

State (open dedup windows, partition watermarks) is snapshotted with its DRIFT
position and caught up silently from the log at start
(:class:`services.runtime.snapshots.SnapshotApp`), so a restart loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from contracts.alerts import Alert, AlertClock
from contracts.codec import ContractError, decode_drift, encode_json
from contracts.subjects import ALERTS_CLOCK, ALERTS_RAW, DRIFT, ConsumerSpec, decisions_subject
from services.anomaly_detector import core
from services.runtime.service import Incoming, Invalid, Outgoing
from services.runtime.settings import Settings
from services.runtime.snapshots import SnapshotApp

DECISIONS_SUBJECT = decisions_subject("anomaly")
_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(core.Snapshot)


def config_from(settings: Settings) -> core.Config:
    section = settings.anomaly_detector
    return core.Config(
        dedup_window_ns=section.dedup_window.ns,
        suppressions=tuple(
            core.Suppression(image=s.image, executable=s.executable, dns=s.dns, event_type=s.event_type)
            for s in section.suppressions
        ),
    )


def subject_of(message: core.Output) -> str:
    if isinstance(message, Alert):
        return ALERTS_RAW
    if isinstance(message, AlertClock):
        return ALERTS_CLOCK
    return DECISIONS_SUBJECT


class AnomalyDetector(SnapshotApp):
    name = "anomaly-detector"
    consumers = (ConsumerSpec(DRIFT, "anomaly-detector"),)

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
        core.handle_batch(self.state, self.config, subject, decode_drift(data))

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            batch = decode_drift(msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        outputs = core.handle_batch(self.state, self.config, msg.subject, batch)
        self.counters["drifts"] += len(batch.drifts)
        self.counters["drift_gaps"] = self.state.gaps
        for out in outputs:
            self.counters[type(out).__name__.lower() + "s"] += 1
        return [Outgoing(subject_of(out), encode_json(out), id=out.id) for out in outputs]


def build(settings: Settings) -> AnomalyDetector:
    return AnomalyDetector(settings)
