"""throttler core (pure, event time): per-container alert throttling with
KubeArmor's semantics.

Invariants:

- Per container (and per rule that has its own budget, see below) at most
  ``max_per_sec`` alerts pass in a 1-second window. A window starts at the
  first alert after the previous one ended and covers ``[start, start + 1 s)``;
  an alert exactly at ``start + 1 s`` opens a new window.
- The first excess alert (at time ``T``) is replaced by one :class:`AlertThreshold`
  (``time: T``, ``MaxAlertsPerSec``, ``DroppingAlertsInterval``, the container
  with its pod metadata). As in KubeArmor (``feeder.go``
  ``ShouldDropAlertsPerContainer`` and its kernel twin in ``BPF/shared.h``), the
  throttle window is measured from the *first alert of the 1-second window*
  that overflowed (its ``start``, KubeArmor's ``FirstEventTimestamp``), not from
  ``T``: every alert of that container (bucket) with a time in ``[start, start +
  throttle)`` is dropped and counted — the excess alert included. An alert at
  exactly ``start + throttle`` passes and opens a fresh 1-second window.
- Dropped alerts are never silently lost: when the throttle window ends, one
  ``throttle`` :class:`Decision` carries the dropped count (KubeArmor only drops).
  The end is seen either on the next alert of that bucket at or past it, or on
  the event-time clock.
- The clock: :class:`AlertClock` messages give each DRIFT partition's event time
  *per node* (the node whose events and ticks made it). A bucket belongs to the
  node of the alert that opened it (``Alert.event.node``) and is closed by that
  node's clock only: the lowest of the node's times over every partition in
  ``Config.sources`` (a window closes only once every partition has passed it;
  partitions are processed in parallel, so a clock over the partitions *seen so
  far* would jump ahead of one that has not reported yet and make the outcome
  depend on timing). Without ``sources``, the partitions seen so far count. So a
  trace replayed into a Vigil whose live collector ticks on wall-clock time
  keeps its own clock. The empty node (events that name none, clocks from an
  older detector) is every node's: its clock moves every node's, and its buckets
  follow the highest node clock of each partition (the single clock of before).
- Per-rule budgets: an alert whose ``rule_id`` has a budget is counted in its
  own bucket ``(container, rule)`` with that budget; other alerts share the
  container bucket ``(container, "")``.
- ``enabled=False``: every alert passes, nothing is counted.
- Only inputs and their order decide; the wall clock is never read. State is
  the buckets of containers that alerted in the last second or are throttled,
  plus a time per (clock source, node); idle buckets are forgotten once their
  clock passes their window. :func:`export` / :func:`restore` turn it into a
  plain :class:`Snapshot` and back; ``restore(export(s))`` continues exactly as
  ``s``; a snapshot written before per-node clocks loads as the empty node's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from msgspec import Struct

from contracts.alerts import Alert, AlertClock, AlertThreshold
from contracts.decisions import Decision, about_container
from contracts.events import Container

NS = 1_000_000_000
RATE_WINDOW_NS = NS
ANY_NODE = ""  # events that name no node: their clock is every node's

Input = Alert | AlertThreshold | AlertClock
Output = Alert | AlertThreshold | Decision
BucketKey = tuple[str, str]  # (container id, rule id or "" for the container budget)


@dataclass(frozen=True)
class Config:
    enabled: bool = True
    max_per_sec: int = 10
    throttle_sec: int = 30
    rule_budgets: Mapping[str, int] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # every clock source (DRIFT partition subject); () = those seen

    @property
    def throttle_ns(self) -> int:
        return self.throttle_sec * NS


@dataclass
class Bucket:
    container: Container
    start: int  # start of the current 1-second window
    count: int = 0
    throttled_at: int | None = None  # start of the throttle window (the overflowed window's start)
    threshold_id: str = ""
    dropped: int = 0
    node: str = ANY_NODE  # whose clock closes this bucket's windows


@dataclass
class State:
    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)
    clocks: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> node -> time
    now: dict[str, int] = field(default_factory=dict)  # node -> its lowest time over the sources


class Snapshot(Struct, kw_only=True):
    """The whole state, in a form msgpack can carry. ``clocks`` and ``now`` are
    how snapshots held the single clock before per-node clocks (read, not written)."""

    buckets: list[tuple[str, str, Bucket]]
    clocks: dict[str, int] = {}
    now: int = 0
    node_clocks: dict[str, dict[str, int]] = {}
    node_now: dict[str, int] = {}


def export(state: State) -> Snapshot:
    buckets = [(cid, rule, bucket) for (cid, rule), bucket in sorted(state.buckets.items())]
    clocks = {source: dict(per_node) for source, per_node in state.clocks.items()}
    return Snapshot(buckets=buckets, node_clocks=clocks, node_now=dict(state.now))


def restore(snapshot: Snapshot) -> State:
    buckets = {(cid, rule): bucket for cid, rule, bucket in snapshot.buckets}
    if snapshot.node_clocks or snapshot.node_now:
        clocks = {source: dict(per_node) for source, per_node in snapshot.node_clocks.items()}
        return State(buckets=buckets, clocks=clocks, now=dict(snapshot.node_now))
    legacy = {source: {ANY_NODE: time} for source, time in snapshot.clocks.items()}
    return State(buckets=buckets, clocks=legacy, now={ANY_NODE: snapshot.now} if snapshot.now else {})


def handle(state: State, config: Config, message: Input) -> list[Output]:
    """Apply one input; return what to publish, in order (mutates ``state``)."""
    if isinstance(message, AlertClock):
        return tick(state, config, message.source, message.time, message.node)
    if not config.enabled or isinstance(message, AlertThreshold):
        return [message]
    return admit(state, config, message)


def admit(state: State, config: Config, alert: Alert) -> list[Output]:
    key, limit = bucket_of(config, alert)
    out: list[Output] = []
    bucket = state.buckets.get(key)
    if bucket is not None and bucket.throttled_at is not None:
        if alert.time < bucket.throttled_at + config.throttle_ns:
            bucket.dropped += 1
            return out
        out.append(throttle_decision(config, key, state.buckets.pop(key)))
        bucket = None
    if bucket is None or alert.time >= bucket.start + RATE_WINDOW_NS:
        node = alert.event.node if alert.event is not None else ANY_NODE
        bucket = state.buckets[key] = Bucket(container=alert.container, start=alert.time, node=node)
    bucket.count += 1
    if bucket.count <= limit:
        out.append(alert)
        return out
    bucket.throttled_at = bucket.start  # KubeArmor: FirstEventTimestamp of the window that overflowed
    bucket.threshold_id = f"threshold:{alert.id}"
    bucket.dropped = 1
    out.append(threshold_alert(config, key, bucket, limit, alert.time))
    return out


def bucket_of(config: Config, alert: Alert) -> tuple[BucketKey, int]:
    budget = config.rule_budgets.get(alert.rule_id)
    if budget is not None:
        return (alert.container.id, alert.rule_id), budget
    return (alert.container.id, ""), config.max_per_sec


def tick(state: State, config: Config, source: str, time: int, node: str = ANY_NODE) -> list[Output]:
    """Advance ``node``'s clock on ``source``; close the throttle windows and forget the
    idle buckets their node's clock has passed (nodes in name order, buckets in key order)."""
    per_node = state.clocks.setdefault(source, {})
    if time <= per_node.get(node, 0):
        return []
    per_node[node] = time
    out: list[Output] = []
    nodes = {n for times in state.clocks.values() for n in times} | {b.node for b in state.buckets.values()}
    for each in sorted(nodes | {ANY_NODE}):
        now = node_now(state, config, each)
        if now > state.now.get(each, 0):
            state.now[each] = now
            out.extend(_pass(state, config, each, now))
    return out


def node_now(state: State, config: Config, node: str) -> int:
    """``node``'s event time: its lowest time over the sources (the empty node's clock moves
    every node's); for the empty node, the lowest over the sources of each one's highest node."""
    sources = config.sources or tuple(state.clocks)
    if not sources:
        return 0
    if node == ANY_NODE:
        return min(max(state.clocks.get(s, {}).values(), default=0) for s in sources)
    return min(_time_of(state.clocks.get(s, {}), node) for s in sources)


def _time_of(per_node: dict[str, int], node: str) -> int:
    return max(per_node.get(node, 0), per_node.get(ANY_NODE, 0))


def _pass(state: State, config: Config, node: str, now: int) -> list[Output]:
    out: list[Output] = []
    for key in sorted(k for k, b in state.buckets.items() if b.node == node):
        bucket = state.buckets[key]
        if bucket.throttled_at is not None:
            if bucket.throttled_at + config.throttle_ns <= now:
                out.append(throttle_decision(config, key, state.buckets.pop(key)))
        elif bucket.start + RATE_WINDOW_NS <= now:
            del state.buckets[key]
    return out


def threshold_alert(config: Config, key: BucketKey, bucket: Bucket, limit: int, time: int) -> AlertThreshold:
    """KubeArmor's AlertThreshold, at the time of the excess alert it replaces."""
    return AlertThreshold(
        id=bucket.threshold_id,
        time=time,
        container=bucket.container,
        MaxAlertsPerSec=limit,
        DroppingAlertsInterval=config.throttle_sec,
        rule_id=key[1],
    )


def throttle_decision(config: Config, key: BucketKey, bucket: Bucket) -> Decision:
    assert bucket.throttled_at is not None
    end = bucket.throttled_at + config.throttle_ns
    c = bucket.container
    scope = f"rule {key[1]} of container {c.id}" if key[1] else f"container {c.id}"
    return about_container(
        c,
        id=f"throttle:{bucket.threshold_id}",
        time=end,
        source="throttle",
        event_type="throttle",
        action="throttle",
        rule=key[1] or "max_alert_per_sec",
        message=f"dropped {bucket.dropped} alerts of {scope} during {config.throttle_sec}s",
        count=bucket.dropped,
        details={
            "threshold_id": bucket.threshold_id,
            "window_start": bucket.throttled_at,
            "window_end": end,
            "max_alerts_per_sec": config.rule_budgets.get(key[1], config.max_per_sec) if key[1] else config.max_per_sec,
            "dropping_alerts_interval": config.throttle_sec,
        },
    )
