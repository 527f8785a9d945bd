"""throttler core (pure, event time): per-container alert throttling with
KubeArmor's semantics.

Invariants:

- Per container (and per rule that has its own budget, see below) at most
  ``max_per_sec`` alerts pass in a 1-second window. A window starts at the
  first alert after the previous one ended and covers ``[start, start + 1 s)``;
  an alert exactly at ``start + 1 s`` opens a new window.
- The first excess alert at time ``T`` is replaced by one :class:`AlertThreshold`
  (``MaxAlertsPerSec``, ``DroppingAlertsInterval``, the container with its pod
  metadata) and opens a throttle window ``[T, T + throttle)``: every alert of
  that container (bucket) with a time inside it is dropped and counted — the
  excess alert included. An alert at exactly ``T + throttle`` passes and opens
  a fresh 1-second window.
- Dropped alerts are never silently lost: when the throttle window ends, one
  ``throttle`` :class:`Decision` carries the dropped count. The end is seen
  either on the next alert of that bucket at or past it, or on the event-time
  clock: :class:`AlertClock` messages give each DRIFT partition's watermark and
  the throttler's clock is the lowest of them over every partition in
  ``Config.sources`` (a window closes only once every partition has passed it;
  partitions are processed in parallel, so a clock over the partitions *seen so
  far* would jump ahead of one that has not reported yet and make the outcome
  depend on timing). Without ``sources``, the partitions seen so far count.
- Per-rule budgets: an alert whose ``rule_id`` has a budget is counted in its
  own bucket ``(container, rule)`` with that budget; other alerts share the
  container bucket ``(container, "")``.
- ``enabled=False``: every alert passes, nothing is counted.
- Only inputs and their order decide; the wall clock is never read. State is
  the buckets of containers that alerted in the last second or are throttled,
  plus a watermark per clock source; idle buckets are forgotten once the clock
  passes their window. :func:`export` / :func:`restore` turn it into a plain
  :class:`Snapshot` and back; ``restore(export(s))`` continues exactly as ``s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from msgspec import Struct

from contracts.alerts import Alert, AlertClock, AlertThreshold
from contracts.decisions import Decision
from contracts.events import Container

NS = 1_000_000_000
RATE_WINDOW_NS = NS

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
    throttled_at: int | None = None  # T: start of the throttle window
    threshold_id: str = ""
    dropped: int = 0


@dataclass
class State:
    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)
    clocks: dict[str, int] = field(default_factory=dict)
    now: int = 0  # lowest clock over sources


class Snapshot(Struct, kw_only=True):
    """The whole state, in a form msgpack can carry."""

    buckets: list[tuple[str, str, Bucket]]
    clocks: dict[str, int]
    now: int


def export(state: State) -> Snapshot:
    buckets = [(cid, rule, bucket) for (cid, rule), bucket in sorted(state.buckets.items())]
    return Snapshot(buckets=buckets, clocks=dict(state.clocks), now=state.now)


def restore(snapshot: Snapshot) -> State:
    buckets = {(cid, rule): bucket for cid, rule, bucket in snapshot.buckets}
    return State(buckets=buckets, clocks=dict(snapshot.clocks), now=snapshot.now)


def handle(state: State, config: Config, message: Input) -> list[Output]:
    """Apply one input; return what to publish, in order (mutates ``state``)."""
    if isinstance(message, AlertClock):
        return tick(state, config, message.source, message.time)
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
        bucket = state.buckets[key] = Bucket(container=alert.container, start=alert.time)
    bucket.count += 1
    if bucket.count <= limit:
        out.append(alert)
        return out
    bucket.throttled_at = alert.time
    bucket.threshold_id = f"threshold:{alert.id}"
    bucket.dropped = 1
    out.append(threshold_alert(config, key, bucket, limit))
    return out


def bucket_of(config: Config, alert: Alert) -> tuple[BucketKey, int]:
    budget = config.rule_budgets.get(alert.rule_id)
    if budget is not None:
        return (alert.container.id, alert.rule_id), budget
    return (alert.container.id, ""), config.max_per_sec


def tick(state: State, config: Config, source: str, time: int) -> list[Output]:
    """Advance ``source``'s clock; close the throttle windows and forget the idle
    buckets the lowest clock has passed, in bucket-key order."""
    if time <= state.clocks.get(source, 0):
        return []
    state.clocks[source] = time
    now = min(state.clocks.get(s, 0) for s in config.sources) if config.sources else min(state.clocks.values())
    if now <= state.now:
        return []
    state.now = now
    out: list[Output] = []
    for key in sorted(state.buckets):
        bucket = state.buckets[key]
        if bucket.throttled_at is not None:
            if bucket.throttled_at + config.throttle_ns <= now:
                out.append(throttle_decision(config, key, state.buckets.pop(key)))
        elif bucket.start + RATE_WINDOW_NS <= now:
            del state.buckets[key]
    return out


def threshold_alert(config: Config, key: BucketKey, bucket: Bucket, limit: int) -> AlertThreshold:
    assert bucket.throttled_at is not None
    return AlertThreshold(
        id=bucket.threshold_id,
        time=bucket.throttled_at,
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
    return Decision(
        id=f"throttle:{bucket.threshold_id}",
        time=end,
        source="throttle",
        event_type="throttle",
        action="throttle",
        rule=key[1] or "max_alert_per_sec",
        message=f"dropped {bucket.dropped} alerts of {scope} during {config.throttle_sec}s",
        resource_kind="Container",
        resource_namespace=c.namespace,
        resource_name=c.name,
        image_name=c.image_name,
        image_tag=c.image_tag,
        container_id=c.id,
        pod=c.pod,
        count=bucket.dropped,
        details={
            "threshold_id": bucket.threshold_id,
            "window_start": bucket.throttled_at,
            "window_end": end,
            "max_alerts_per_sec": config.rule_budgets.get(key[1], config.max_per_sec) if key[1] else config.max_per_sec,
            "dropping_alerts_interval": config.throttle_sec,
        },
    )
