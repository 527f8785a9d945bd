"""anomaly-detector adapter: reads drift batches (walking skeleton)."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.codec import ContractError, decode_drift
from contracts.subjects import DRIFT, ConsumerSpec
from services.anomaly_detector import core
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing
from services.runtime.settings import Settings


class AnomalyDetector(AppBase):
    name = "anomaly-detector"
    consumers = (ConsumerSpec(DRIFT, "anomaly-detector"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.state = core.State()

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            batch = decode_drift(msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        for drift in batch.drifts:
            self.state = core.evolve(self.state, drift)
        return ()


def build(settings: Settings) -> AnomalyDetector:
    return AnomalyDetector(settings)
