"""version-evictor adapter: PROFILES in, EvictVersion on COMMANDS out, OpenTelemetry metrics.

Metrics: ``security_profile.evicted_versions`` (counter, attributes
image_name, image_tag) each time the learner confirms an eviction
(VersionEvicted), and ``security_profile.versions`` (gauge per image_name).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from contracts.codec import ContractError, decode_json, encode_json
from contracts.profiles import VersionEvicted
from contracts.subjects import PROFILES, ConsumerSpec, commands_subject
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing
from services.runtime.settings import Settings
from services.version_evictor import core


class VersionEvictor(AppBase):
    name = "version-evictor"
    consumers = (ConsumerSpec(PROFILES, "version-evictor"),)

    def __init__(self, settings: Settings, meter_provider: metrics.MeterProvider | None = None) -> None:
        super().__init__(settings)
        self.state = core.State()
        self.max_image_tags = settings.runtime_security_config.security_profile.max_image_tags
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("vigil.version-evictor")
        self.evicted = meter.create_counter(
            "security_profile.evicted_versions", description="profile versions evicted past max_image_tags"
        )
        meter.create_observable_gauge(
            "security_profile.versions", callbacks=[self._observe_versions], description="versions held per profile"
        )

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            event = decode_json("profile_event", msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        if isinstance(event, VersionEvicted):
            self.evicted.add(1, {"image_name": event.image_name, "image_tag": event.image_tag})
            self.counters["evicted"] += 1
        commands = core.handle(self.state, event, self.max_image_tags)
        return [
            Outgoing(commands_subject(c.image_name, self.settings.nats.partitions), encode_json(c), id=c.id)
            for c in commands
        ]

    def _observe_versions(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"image_name": image}) for image, n in core.version_counts(self.state).items()]


def build(settings: Settings) -> VersionEvictor:
    return VersionEvictor(settings)
