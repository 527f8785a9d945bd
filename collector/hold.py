"""The identity hold: events of a container nobody has named yet wait (bounded
in time and in count) for the runtime to answer, and are published with
their identity once it does — never as image-less events that learn nothing.

Invariants:
- a container's events leave the hold in the order they came, and once a
  container has events held, its later events queue behind them (a release
  never overtakes);
- every event admitted is either released with a workload or dropped and
  counted under one cause: the resolver's final answer (``pod_sandbox``,
  ``no_image``, ``no_runtime_source``), ``not_found`` when ``max_age_ns``
  passed without an answer, ``hold_overflow`` when ``max_events`` are held;
- pure: the caller gives the time (monotonic ns) and the verdict function;
  events without a container (ticks), host events and known containers pass
  straight through.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from collector.runtimes import HOLD_OVERFLOW, NOT_FOUND
from contracts.events import HOST_CONTAINER_ID, Container, RawEvent
from contracts.workloads import Workload, container_of

SAMPLES = 5  # container ids remembered per cause, for `vigil status`

Verdict = Callable[[str], Workload | str | None]  # container id → workload | final cause | keep waiting


@dataclass
class _Held:
    since: int
    events: list[RawEvent]


@dataclass
class Hold:
    max_age_ns: int
    max_events: int
    held: OrderedDict[str, _Held] = field(default_factory=OrderedDict)
    count: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # events, per cause
    containers: Counter[str] = field(default_factory=Counter)  # containers given up on, per cause
    released: int = 0
    samples: dict[str, deque[str]] = field(default_factory=dict)
    dropped_cgroups: dict[int, str] = field(default_factory=dict)  # cgroup id → container id, dropped events

    def admit(self, events: Iterable[RawEvent], now: int) -> tuple[list[RawEvent], list[str]]:
        """Events to publish now, and the container ids newly held (to ask the runtime about)."""
        out: list[RawEvent] = []
        new: list[str] = []
        for e in events:
            c: Container | None = getattr(e, "container", None)
            if c is None or c.id == HOST_CONTAINER_ID or (c.known and c.id not in self.held):
                out.append(e)
                continue
            if self.count >= self.max_events:
                self._drop(c.id, [e], HOLD_OVERFLOW)
                continue
            held = self.held.get(c.id)
            if held is None:
                held = self.held[c.id] = _Held(now, [])
                new.append(c.id)
            held.events.append(e)
            self.count += 1
        return out, new

    def release(
        self, verdict: Verdict, now: int, timeout_cause: Callable[[str], str] = lambda _: NOT_FOUND
    ) -> tuple[list[RawEvent], list[str]]:
        """Held events whose container is now named (with its identity), and the
        container ids given up on (answered with a cause, or too old: the cause
        is then ``timeout_cause(container id)``)."""
        out: list[RawEvent] = []
        ended: list[str] = []
        for cid in list(self.held):
            held = self.held[cid]
            answer = verdict(cid)
            if isinstance(answer, Workload):
                out.extend(with_identity(e, answer) for e in held.events)
                self.released += len(held.events)
            elif isinstance(answer, str):
                self._drop(cid, held.events, answer)
            elif now - held.since >= self.max_age_ns:
                self._drop(cid, held.events, timeout_cause(cid))
            else:
                continue
            del self.held[cid]
            self.count -= len(held.events)
            if not isinstance(answer, Workload):
                ended.append(cid)
        return out, ended

    def _drop(self, cid: str, events: list[RawEvent], cause: str) -> None:
        self.dropped[cause] += len(events)
        if cause != HOLD_OVERFLOW:
            self.containers[cause] += 1
            sample = self.samples.setdefault(cause, deque(maxlen=SAMPLES))
            if cid not in sample:
                sample.append(cid)
        for e in events:
            c = getattr(e, "container", None)
            if c is not None and c.cgroup_id and len(self.dropped_cgroups) < 65_536:
                self.dropped_cgroups[c.cgroup_id] = cid


def with_identity(event: RawEvent, w: Workload) -> RawEvent:
    c: Container = event.container  # type: ignore[union-attr]
    return msgspec.structs.replace(event, container=container_of(w, c.cgroup_id, c.id))
