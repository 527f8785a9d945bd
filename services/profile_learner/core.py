"""profile-learner core (pure). Walking skeleton: counts events per profile key.

The Datadog life-cycle (warm-up, learning, stable, unstable, versions per
image tag) lands with the profiles issue; this module imports no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.events import RawEvent


@dataclass
class State:
    events_seen: dict[str, int] = field(default_factory=dict)


def evolve(state: State, event: RawEvent) -> State:
    container = getattr(event, "container", None)
    key = container.image_name if container is not None else ""
    state.events_seen[key] = state.events_seen.get(key, 0) + 1
    return state
