"""version-evictor adapter: reads profile events (walking skeleton)."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.codec import ContractError, decode_json
from contracts.subjects import PROFILES, ConsumerSpec
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing
from services.runtime.settings import Settings
from services.version_evictor import core


class VersionEvictor(AppBase):
    name = "version-evictor"
    consumers = (ConsumerSpec(PROFILES, "version-evictor"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.state = core.State()

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            event = decode_json("profile_event", msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        self.state = core.evolve(self.state, event)
        return ()


def build(settings: Settings) -> VersionEvictor:
    return VersionEvictor(settings)
