"""anomaly-detector adapter: DriftBatch (msgpack, DRIFT) in; Alert on
``vigil.alerts.raw``, Decision on ``vigil.decisions.anomaly`` and AlertClock on
``vigil.alerts.clock`` out. Every output's ``Nats-Msg-Id`` is its contract id,
which the core derives from the drift id, so a replay republishes nothing new.

State (open dedup windows, partition watermarks) lives in memory only; what a
restart loses is documented in docs/alerts.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.alerts import Alert, AlertClock
from contracts.codec import ContractError, decode_drift, encode_json
from contracts.subjects import ALERTS_CLOCK, ALERTS_RAW, DRIFT, ConsumerSpec, decisions_subject
from services.anomaly_detector import core
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing
from services.runtime.settings import Settings

DECISIONS_SUBJECT = decisions_subject("anomaly")


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


class AnomalyDetector(AppBase):
    name = "anomaly-detector"
    consumers = (ConsumerSpec(DRIFT, "anomaly-detector"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = config_from(settings)
        self.state = core.State()

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            batch = decode_drift(msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        outputs = core.handle_batch(self.state, self.config, msg.subject, batch)
        self.counters["drifts"] += len(batch.drifts)
        for out in outputs:
            self.counters[type(out).__name__.lower() + "s"] += 1
        return [Outgoing(subject_of(out), encode_json(out), id=out.id) for out in outputs]


def build(settings: Settings) -> AnomalyDetector:
    return AnomalyDetector(settings)
