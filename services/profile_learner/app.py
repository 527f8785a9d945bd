"""profile-learner adapter: decode event batches, fold them into the core."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.codec import ContractError, decode_batch
from contracts.subjects import EVENTS, ConsumerSpec
from services.profile_learner import core
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing
from services.runtime.settings import Settings


class ProfileLearner(AppBase):
    name = "profile-learner"
    consumers = (ConsumerSpec(EVENTS, "profile-learner"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.state = core.State()

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            batch = decode_batch(msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        for event in batch.events:
            self.state = core.evolve(self.state, event)
        self.counters["events"] += len(batch.events)
        return ()


def build(settings: Settings) -> ProfileLearner:
    return ProfileLearner(settings)
