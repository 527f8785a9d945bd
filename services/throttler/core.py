"""throttler core (pure): per-container alert throttling (KubeArmor semantics).

Walking skeleton: the logic lands with its issue; this module imports no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class State:
    seen: int = 0


def evolve(state: State, _event: object) -> State:
    state.seen += 1
    return state
