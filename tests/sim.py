"""In-memory simulation of learner + version-evictor.

Pure (no bus): feeds raw events through :func:`core.apply_batch`, routes every
profile event through the version-evictor core and applies the evictions it
asks for immediately, as the two services do over the bus.
"""

from __future__ import annotations

from typing import Any

from contracts.events import EventBatch, RawEvent
from contracts.profiles import Command, Drift, ProfileEvent
from services.profile_learner import core
from services.version_evictor import core as evictor


class Sim:
    """Learner + evictor folded together, one batch per :meth:`feed` call."""

    def __init__(self, cfg: core.Config, max_image_tags: int = 10, partition: int = 0) -> None:
        self.cfg = cfg
        self.max_image_tags = max_image_tags
        self.partition = partition
        self.state = core.State()
        self.evictor = evictor.State()
        self.seq = 0
        self.events: list[ProfileEvent] = []
        self.drifts: list[Drift] = []

    def feed(self, *raw: RawEvent) -> list[Drift]:
        """Apply events as one batch; return the drift they caused."""
        batch = EventBatch(node="n1", boot="b1", first_seq=self.seq, partition=self.partition, events=list(raw))
        self.seq += len(raw)
        evs, db = core.apply_batch(self.state, self.cfg, batch)
        self._route(evs)
        drifts = list(db.drifts) if db is not None else []
        self.drifts.extend(drifts)
        return drifts

    def command(self, cmd: Command) -> list[ProfileEvent]:
        evs = core.apply_command(self.state, self.cfg, cmd)
        self._route(evs)
        return evs

    def _route(self, evs: list[ProfileEvent]) -> None:
        for ev in evs:
            self.events.append(ev)
            for cmd in evictor.handle(self.evictor, ev, self.max_image_tags):
                self.command(cmd)

    # --- reading ---
    def version(self, image: str, tag: str) -> core.Version | None:
        prof = self.state.profiles.get(image)
        return prof.versions.get(tag) if prof else None

    def tags(self, image: str) -> list[str]:
        prof = self.state.profiles.get(image)
        return list(prof.versions) if prof else []

    def of_kind(self, kind: type, **match: Any) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())]
