"""throttler adapter: raw alerts in, output alerts out (walking skeleton: pass-through)."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.codec import ContractError, decode_json
from contracts.subjects import ALERTS, ALERTS_OUT, ALERTS_RAW, ConsumerSpec
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing
from services.runtime.settings import Settings
from services.throttler import core


class Throttler(AppBase):
    name = "throttler"
    consumers = (ConsumerSpec(ALERTS, "throttler", (ALERTS_RAW,)),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.state = core.State()

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            alert = decode_json("alert", msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        self.state = core.evolve(self.state, alert)
        return [Outgoing(ALERTS_OUT, msg.data)]


def build(settings: Settings) -> Throttler:
    return Throttler(settings)
