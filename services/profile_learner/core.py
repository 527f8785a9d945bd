"""profile-learner core (pure): Datadog's security-profile life-cycle on event time.

A profile per image name; a version per image tag ("latest" when missing);
per version first/last seen and a state per event type.

Life-cycle of (version, event type), all on event time (``time`` of events
and clock ticks; never a wall clock):

- ``warmup``: a new version starts here; for ``workload_warmup_period`` after
  its first event everything new is learned and nothing drifts. A container
  that starts (``container_start``) is also in warm-up for that period: its
  new behaviour is learned (even by a stable version) and never drifts.
- ``learning``: new behaviour is inserted; it is also drift when another
  version of the profile is ``stable`` for the type. After
  ``minimum_stable_period.<type>`` with nothing new → ``stable``. Still
  learning ``unstable_profile_time_threshold`` after the first event →
  ``unstable``.
- ``stable``: new behaviour is drift and is not inserted.
- ``unstable`` (terminal unless an operator intervenes): nothing inserted, and
  while any version of the profile is unstable for a type, nothing of that
  type drifts. A learning version whose size for a type reaches
  ``unstable_profile_size_threshold`` becomes unstable too.
- ``at_max_size``: a stable version whose warm-up insertions reached the size
  threshold: behaves as stable (drift, no insertion) but can no longer grow.

Behaviour known in any version of the profile never drifts. Transitions that
depend on elapsed time are evaluated when an event or a tick of the profile's
partition arrives, and are stamped with the exact event time they became due,
so the outcome does not depend on when the learner ran. Commands apply at the
profile's current event time; the adapter records where (see CommandApplied).

Event time is each node's own (docs/runtime.md): a profile is advanced by its
own events and by the ticks of the nodes its events came from (``Profile.nodes``),
a container's warm-up ends on its node's ticks, and every DriftBatch carries the
time each node of its input reached on the partition (``DriftBatch.clocks``). So
a trace replayed beside a live collector, whose ticks are on today's wall clock,
is learned exactly as in an idle Vigil. The empty node (events that name none)
is every node's: its ticks advance every profile, and a profile whose events
name no node (or that was snapshotted before nodes were recorded) follows every
node's ticks.

Memory is bounded by the size threshold per (version, type), ``max_image_tags``
versions (the version-evictor) and ``max_profiles`` profiles: events of a new
image beyond that cap are counted in ``State.over_cap_events`` and not learned.

Redelivery: the state remembers the next expected sequence per (node, boot,
partition); events below it are skipped, so a batch applied twice changes
nothing and emits nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

import msgspec
from msgspec import Struct

from contracts.events import (
    EVENT_TYPES,
    ClockTicked,
    ConnectObserved,
    ContainerStarted,
    ContainerStopped,
    DnsQueried,
    EventBatch,
    EventsLost,
    ExecObserved,
    FileOpened,
    RawEvent,
    SyscallsObserved,
    event_id,
)
from contracts.profiles import (
    DEFAULT_IMAGE_TAG,
    BehaviourAdded,
    Command,
    Drift,
    DriftBatch,
    EvictVersion,
    ImportBehaviour,
    LearnedBehaviour,
    ProfileEvent,
    ProfileReset,
    ProfileSummary,
    ResetProfile,
    SetState,
    StateChanged,
    VersionEvicted,
    VersionFirstSeen,
)
from services.profile_learner.paths import (
    access_mask,
    access_mask_of,
    access_text,
    addr_class,
    dns_key,
    generalise_path,
)

NEVER = 1 << 62
SECOND = 1_000_000_000
MAX_REPLICAS = 64  # distinct containers remembered per version: readiness asks "at least N"
LINEAGE_SEP = "\x1f"
_LEARNS = ("learning", "warmup")
_STABLE_LIKE = ("stable", "at_max_size")


class Config(Struct, frozen=True, kw_only=True):
    """Plain values from settings (``runtime_security_config.security_profile.*``), durations in ns."""

    stable_period: dict[str, int]
    warmup_period: int = 180 * SECOND
    unstable_time: int = 3600 * SECOND
    size_threshold: int = 10_000
    dns_depth: int = 3
    max_profiles: int = 10_000
    event_types: tuple[str, ...] = EVENT_TYPES
    watermark_step: int = SECOND


def config(stable: float = 900, **kw: Any) -> Config:
    """A Config with the same stable period (seconds) for every type; other durations in ns."""
    return Config(stable_period={t: int(stable * SECOND) for t in EVENT_TYPES}, **kw)


class Version(Struct, kw_only=True):
    tag: str
    first_seen: int
    last_seen: int
    warmup_until: int
    states: dict[str, str]
    since: dict[str, int]  # learning started (unstable threshold clock)
    last_new: dict[str, int]  # last insertion while learning (stable period clock)
    sizes: dict[str, int]
    # event type -> executable ("" for dns) -> key -> access mask (1 when not a file)
    behaviours: dict[str, dict[str, dict[str, int]]]
    # What readiness weighs (services/profile_learner/readiness.py), all on event time:
    starts: int = 0  # containers of this version seen starting (start-up behaviour happens once)
    replicas: dict[str, int] = {}  # container id -> first event time (at most MAX_REPLICAS kept)
    drifts: dict[str, int] = {}  # event type -> drifts reported while this version was stable
    last_drift: dict[str, int] = {}  # event type -> time of the last one
    lost: dict[str, int] = {}  # "records" / "syscalls" -> what the kernel side lost of its containers
    last_lost: int = 0


class Profile(Struct, kw_only=True):
    image: str
    partition: int = 0
    now: int = 0
    deadline: int = NEVER
    versions: dict[str, Version] = {}
    nodes: dict[str, int] = {}  # node -> its first event of the profile: the ticks that advance it


class State(Struct, kw_only=True):
    profiles: dict[str, Profile] = {}
    containers: dict[str, int] = {}  # container id -> end of its warm-up
    watermarks: dict[int, int] = {}  # partition -> event time reached
    published: dict[int, int] = {}  # partition -> watermark last published in a DriftBatch
    drift_seq: dict[int, int] = {}  # partition -> seq of the last DriftBatch published
    seen: dict[str, list[tuple[int, int]]] = {}  # "node:boot:partition" -> sequences folded, as [start, end) spans
    now: int = 0
    over_cap_events: int = 0
    container_nodes: dict[str, str] = {}  # container id in warm-up -> its node (whose ticks end the warm-up)
    node_watermarks: dict[int, dict[str, int]] = {}  # partition -> node -> event time reached
    node_published: dict[int, dict[str, int]] = {}  # partition -> node -> time last published in a DriftBatch


class Out:
    """Outputs of one input: profile events and drifts, ids derived from input ids."""

    __slots__ = ("events", "drifts", "base", "dbase")

    def __init__(self) -> None:
        self.events: list[ProfileEvent] = []
        self.drifts: list[Drift] = []
        self.base = 0  # outputs before the current input event: ids count from here,
        self.dbase = 0  # so an id depends on the event, not on how events were batched

    def next_id(self, cause: str) -> str:
        return f"pl:{cause}:{len(self.events) - self.base}"


# --- folding inputs ---------------------------------------------------------------------


def apply_batch(state: State, cfg: Config, batch: EventBatch) -> tuple[list[ProfileEvent], DriftBatch | None]:
    """Fold one EventBatch; return its profile events and the DriftBatch to publish (or None)."""
    out = Out()
    key = f"{batch.node}:{batch.boot}:{batch.partition}"
    events = batch.events
    first = batch.first_seq
    spans = state.seen.get(key, [])
    todo = unseen(spans, first, first + len(events))
    if not todo:
        return [], None
    part = batch.partition
    wm = state.watermarks.get(part, 0)
    nodes: dict[str, int] = {}  # node -> its latest event time in this batch
    for lo, hi in todo:
        for i in range(lo - first, hi - first):
            ev = events[i]
            t = ev.time
            if t > wm:
                wm = t
            if t > nodes.get(ev.node, 0):
                nodes[ev.node] = t
            handler = _HANDLERS.get(type(ev))
            if handler is not None:
                out.base, out.dbase = len(out.events), len(out.drifts)
                handler(state, cfg, ev, part, (batch.node, batch.boot, part, first + i), out)
    state.seen[key] = mark(spans, first, first + len(events))
    state.watermarks[part] = wm
    if wm > state.now:
        state.now = wm
    clocks = state.node_watermarks.setdefault(part, {})
    for node, t in nodes.items():
        if t > clocks.get(node, 0):
            clocks[node] = t
    return out.events, _drift_batch(state, cfg, part, wm, out.drifts, sorted(nodes))


def unseen(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of [start, end) not covered by ``spans`` (sorted, disjoint).

    A batch seen again (redelivered past the dedup window) is skipped, and one
    stored out of order (a publisher retry after later batches were stored) is
    still folded: nothing is dropped for arriving late."""
    gaps: list[tuple[int, int]] = []
    cur = start
    for lo, hi in spans:
        if hi <= cur:
            continue
        if lo >= end:
            break
        if lo > cur:
            gaps.append((cur, lo))
        cur = max(cur, hi)
        if cur >= end:
            return gaps
    if cur < end:
        gaps.append((cur, end))
    return gaps


def mark(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """``spans`` with [start, end) added, merged (one span while batches come in order)."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted([*spans, (start, end)]):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _drift_batch(
    state: State, cfg: Config, part: int, wm: int, drifts: list[Drift], nodes: list[str]
) -> DriftBatch | None:
    """The DriftBatch to publish: with drift, or once the partition's time or the time of a
    node of this input moved by ``watermark_step`` since last published; it carries the time
    of every node of this input (each node's clock is its own)."""
    clocks = {node: state.node_watermarks[part][node] for node in nodes}
    sent = state.node_published.setdefault(part, {})
    moved = any(t - sent.get(node, 0) >= cfg.watermark_step for node, t in clocks.items())
    if not drifts and not moved and wm - state.published.get(part, 0) < cfg.watermark_step:
        return None
    state.published[part] = wm
    sent.update(clocks)
    seq = state.drift_seq[part] = state.drift_seq.get(part, 0) + 1
    return DriftBatch(drifts=drifts, watermark=wm, seq=seq, clocks=clocks)


def fold(state: State, cfg: Config, batches: Iterable[EventBatch]) -> tuple[list[ProfileEvent], list[DriftBatch]]:
    events: list[ProfileEvent] = []
    drifts: list[DriftBatch] = []
    for batch in batches:
        evs, db = apply_batch(state, cfg, batch)
        events.extend(evs)
        if db is not None:
            drifts.append(db)
    return events, drifts


# --- per event ----------------------------------------------------------------------------

Pos = tuple[str, str, int, int]


def _eid(pos: Pos) -> str:
    return event_id(*pos)


def _version(state: State, cfg: Config, ev: Any, part: int, pos: Pos, out: Out) -> tuple[Profile, Version] | None:
    """The (profile, version) an event belongs to, created on first sight; time advanced."""
    c = ev.container
    image = c.image_name
    if not image:
        return None
    t = ev.time
    prof = state.profiles.get(image)
    if prof is None:
        if len(state.profiles) >= cfg.max_profiles:
            state.over_cap_events += 1
            return None
        prof = state.profiles[image] = Profile(image=image, partition=part, now=t, versions={}, nodes={})
    if ev.node not in prof.nodes:
        prof.nodes[ev.node] = t
    if t > prof.now:
        prof.now = t
    if prof.now >= prof.deadline:
        advance(prof, cfg, out, _eid(pos))
    tag = c.image_tag or DEFAULT_IMAGE_TAG
    v = prof.versions.get(tag)
    if v is None:
        v = _new_version(prof, cfg, tag, t)
        out.events.append(
            VersionFirstSeen(
                id=out.next_id(_eid(pos)),
                time=t,
                image_name=image,
                image_tag=tag,
                container_id=c.id,
                versions={tag_: ver.last_seen for tag_, ver in prof.versions.items()},
            )
        )
    elif t > v.last_seen:
        v.last_seen = t
    if c.id not in v.replicas and len(v.replicas) < MAX_REPLICAS:
        v.replicas[c.id] = t
    return prof, v


def _new_version(prof: Profile, cfg: Config, tag: str, t: int) -> Version:
    v = Version(
        tag=tag,
        first_seen=t,
        last_seen=t,
        warmup_until=t + cfg.warmup_period,
        states={et: "warmup" for et in EVENT_TYPES},
        since={et: t for et in EVENT_TYPES},
        last_new={et: t for et in EVENT_TYPES},
        sizes={et: 0 for et in EVENT_TYPES},
        behaviours={et: {} for et in EVENT_TYPES},
    )
    prof.versions[tag] = v
    prof.deadline = min(prof.deadline, _version_deadline(v, cfg))
    return v


def _on_exec(state: State, cfg: Config, ev: ExecObserved, part: int, pos: Pos, out: Out) -> None:
    pv = _version(state, cfg, ev, part, pos, out)
    if pv is not None and "exec" in cfg.event_types:
        p = ev.process
        _observe(state, cfg, pv, "exec", p.path or p.comm, LINEAGE_SEP.join(p.ancestors), 1, ev, pos, out)


def _on_open(state: State, cfg: Config, ev: FileOpened, part: int, pos: Pos, out: Out) -> None:
    pv = _version(state, cfg, ev, part, pos, out)
    if pv is not None and "open" in cfg.event_types:
        p = ev.process
        key = generalise_path(ev.file.path)
        _observe(state, cfg, pv, "open", p.path or p.comm, key, access_mask(ev.file.flags), ev, pos, out)


def _on_dns(state: State, cfg: Config, ev: DnsQueried, part: int, pos: Pos, out: Out) -> None:
    pv = _version(state, cfg, ev, part, pos, out)
    if pv is not None and "dns" in cfg.event_types:
        _observe(state, cfg, pv, "dns", "", dns_key(ev.dns.name, cfg.dns_depth), 1, ev, pos, out)


def _on_connect(state: State, cfg: Config, ev: ConnectObserved, part: int, pos: Pos, out: Out) -> None:
    pv = _version(state, cfg, ev, part, pos, out)
    if pv is not None and "connect" in cfg.event_types:
        n = ev.net
        key = f"{n.proto}:{addr_class(n.addr)}:{n.port}"
        _observe(state, cfg, pv, "connect", ev.process.path or ev.process.comm, key, 1, ev, pos, out)


def _on_syscalls(state: State, cfg: Config, ev: SyscallsObserved, part: int, pos: Pos, out: Out) -> None:
    pv = _version(state, cfg, ev, part, pos, out)
    if pv is not None and "syscalls" in cfg.event_types:
        exe = ev.process.path or ev.process.comm
        for name in ev.syscalls:
            _observe(state, cfg, pv, "syscalls", exe, name, 1, ev, pos, out)


def _on_lifecycle(state: State, cfg: Config, ev: Any, part: int, pos: Pos, out: Out) -> None:
    pv = _version(state, cfg, ev, part, pos, out)
    if pv is None:
        return
    if isinstance(ev, ContainerStarted):
        pv[1].starts += 1
        state.containers[ev.container.id] = ev.time + cfg.warmup_period
        state.container_nodes[ev.container.id] = ev.node
    elif isinstance(ev, ContainerStopped):
        state.containers.pop(ev.container.id, None)
        state.container_nodes.pop(ev.container.id, None)


def _on_lost(state: State, cfg: Config, ev: EventsLost, part: int, pos: Pos, out: Out) -> None:
    pv = _version(state, cfg, ev, part, pos, out)
    if pv is None:
        return
    v = pv[1]
    for kind, n in (("records", ev.records), ("syscalls", ev.syscalls)):
        if n:
            v.lost[kind] = v.lost.get(kind, 0) + n
    v.last_lost = max(v.last_lost, ev.time)


def _on_tick(state: State, cfg: Config, ev: ClockTicked, part: int, pos: Pos, out: Out) -> None:
    """Advance the partition's profiles that follow the tick's node; end its containers' warm-ups."""
    t, node = ev.time, ev.node
    for prof in state.profiles.values():
        if prof.partition != part or not follows(prof.nodes, node):
            continue
        if t > prof.now:
            prof.now = t
        if prof.now >= prof.deadline:
            advance(prof, cfg, out, _eid(pos))
    if state.containers:
        nodes = state.container_nodes
        done = [c for c, until in state.containers.items() if until <= t and follows((nodes.get(c, ""),), node)]
        for cid in done:
            del state.containers[cid]
            nodes.pop(cid, None)


def follows(owners: Collection[str], node: str) -> bool:
    """Whether a tick of ``node`` moves something whose events came from ``owners``: its own
    nodes' ticks do; the empty node's ticks move everything, and something whose events
    named no node (or none recorded) follows every node."""
    return not node or not owners or node in owners or "" in owners


_HANDLERS: dict[type, Callable[..., None]] = {
    ExecObserved: _on_exec,
    FileOpened: _on_open,
    DnsQueried: _on_dns,
    ConnectObserved: _on_connect,
    SyscallsObserved: _on_syscalls,
    ContainerStarted: _on_lifecycle,
    ContainerStopped: _on_lifecycle,
    EventsLost: _on_lost,
    ClockTicked: _on_tick,
}
for _tp in RawEvent.__args__:
    _HANDLERS.setdefault(_tp, _on_lifecycle)  # exit: version last seen only


# --- the decision for one behaviour ----------------------------------------------------------


def _observe(
    state: State,
    cfg: Config,
    pv: tuple[Profile, Version],
    et: str,
    exe: str,
    key: str,
    mask: int,
    ev: Any,
    pos: Pos,
    out: Out,
) -> None:
    """Fast path: known in this version → nothing to do."""
    by_exe = pv[1].behaviours[et].get(exe)
    have = by_exe.get(key, 0) if by_exe is not None else 0
    if have & mask != mask:
        _novel(state, cfg, pv[0], pv[1], et, exe, key, mask & ~have, ev, pos, out)


def _known_elsewhere(prof: Profile, v: Version, et: str, exe: str, key: str, missing: int) -> bool:
    union = 0
    for other in prof.versions.values():
        if other is not v:
            d = other.behaviours[et].get(exe)
            if d is not None:
                union |= d.get(key, 0)
    return union & missing == missing


def _novel(
    state: State,
    cfg: Config,
    prof: Profile,
    v: Version,
    et: str,
    exe: str,
    key: str,
    missing: int,
    ev: Any,
    pos: Pos,
    out: Out,
) -> None:
    t = ev.time
    s = v.states[et]
    warm = s == "warmup" or state.containers.get(ev.container.id, 0) > t
    known = _known_elsewhere(prof, v, et, exe, key, missing)
    inserted = False
    if s in _LEARNS or (s == "stable" and warm):
        inserted = _insert(cfg, prof, v, et, exe, key, missing, ev, pos, out)
        s = v.states[et]
    if known or warm or any(o.states[et] == "unstable" for o in prof.versions.values()):
        return
    if s in _STABLE_LIKE:
        _drift(prof, v, et, exe, key, ev, pos, out, s, "stable_version", inserted, "")
    elif s == "learning":
        stable = next((o.tag for o in prof.versions.values() if o is not v and o.states[et] == "stable"), None)
        if stable is not None:
            _drift(prof, v, et, exe, key, ev, pos, out, s, "other_version_stable", inserted, stable)


def _insert(
    cfg: Config, prof: Profile, v: Version, et: str, exe: str, key: str, missing: int, ev: Any, pos: Pos, out: Out
) -> bool:
    by_exe = v.behaviours[et].get(exe)
    have = by_exe.get(key, 0) if by_exe is not None else 0
    t = ev.time
    if not have and v.sizes[et] >= cfg.size_threshold:
        new = "unstable" if v.states[et] in _LEARNS else "at_max_size"
        _set_state(prof, v, et, new, t, "size_threshold", out, _eid(pos))
        return False
    if by_exe is None:
        by_exe = v.behaviours[et][exe] = {}
    if not have:
        v.sizes[et] += 1
    mask = have | missing
    by_exe[key] = mask
    if v.states[et] in _LEARNS:
        v.last_new[et] = t
    out.events.append(_added(prof, v, et, exe, key, mask, t, out.next_id(_eid(pos))))
    return True


def _added(prof: Profile, v: Version, et: str, exe: str, key: str, mask: int, t: int, id_: str) -> BehaviourAdded:
    if et == "exec":
        lineage = [*key.split(LINEAGE_SEP), exe] if key else [exe]
        return BehaviourAdded(
            id=id_,
            time=t,
            image_name=prof.image,
            image_tag=v.tag,
            event_type="exec",
            behaviour=exe,
            executable=exe,
            lineage=lineage,
        )
    access = access_text(mask) if et == "open" else ""
    return BehaviourAdded(
        id=id_,
        time=t,
        image_name=prof.image,
        image_tag=v.tag,
        event_type=et,  # type: ignore[arg-type]
        behaviour=key,
        executable=exe,
        access=access,
    )


def _drift(
    prof: Profile,
    v: Version,
    et: str,
    exe: str,
    key: str,
    ev: Any,
    pos: Pos,
    out: Out,
    s: str,
    reason: str,
    inserted: bool,
    stable_tag: str,
) -> None:
    eid = _eid(pos)
    behaviour = exe if et == "exec" else key
    v.drifts[et] = v.drifts.get(et, 0) + 1
    v.last_drift[et] = max(v.last_drift.get(et, 0), ev.time)
    out.drifts.append(
        Drift(
            id=f"drift:{eid}:{len(out.drifts) - out.dbase}",
            time=ev.time,
            image_name=prof.image,
            image_tag=v.tag,
            event_type=et,  # type: ignore[arg-type]
            behaviour=behaviour,
            version_state=s,  # type: ignore[arg-type]
            reason=reason,  # type: ignore[arg-type]
            inserted=inserted,
            stable_tag=stable_tag,
            container=ev.container,
            event=ev,
            event_id=eid,
        )
    )


# --- time-driven transitions -------------------------------------------------------------------


def _version_deadline(v: Version, cfg: Config) -> int:
    dues = [due[0] for et in cfg.event_types if (due := _due(v, cfg, et)) is not None]
    return min(dues, default=NEVER)


def advance(prof: Profile, cfg: Config, out: Out, cause: str) -> None:
    """Apply every transition due at or before ``prof.now`` in event-time order (ties: version, then
    type order), each stamped with the time it became due, so where ticks fall changes nothing."""
    while True:
        best: tuple[int, Version, str, str, str] | None = None
        for v in prof.versions.values():
            for et in cfg.event_types:
                due = _due(v, cfg, et)
                if due is not None and due[0] <= prof.now and (best is None or due[0] < best[0]):
                    best = (due[0], v, et, due[1], due[2])
        if best is None:
            break
        t, v, et, new, reason = best
        _set_state(prof, v, et, new, t, reason, out, cause, keep_clocks=True)
    _refresh_deadline(prof, cfg)


def _due(v: Version, cfg: Config, et: str) -> tuple[int, str, str] | None:
    """The next time-driven transition of (version, type): (time, new state, reason)."""
    s = v.states[et]
    if s == "warmup":
        return v.warmup_until, "learning", "warmup_period"
    if s != "learning":
        return None
    stable_at = max(v.last_new[et] + cfg.stable_period[et], v.warmup_until)
    unstable_at = max(v.since[et] + cfg.unstable_time, v.warmup_until)
    if stable_at <= unstable_at:
        return stable_at, "stable", "stable_period"
    return unstable_at, "unstable", "time_threshold"


def _refresh_deadline(prof: Profile, cfg: Config) -> None:
    prof.deadline = min((_version_deadline(v, cfg) for v in prof.versions.values()), default=NEVER)


def _set_state(
    prof: Profile, v: Version, et: str, new: str, t: int, reason: str, out: Out, cause: str, keep_clocks: bool = False
) -> None:
    old = v.states[et]
    if old == new:
        return
    v.states[et] = new
    if new in _LEARNS and not keep_clocks:
        v.since[et] = v.last_new[et] = t
    out.events.append(
        StateChanged(
            id=out.next_id(cause),
            time=t,
            image_name=prof.image,
            image_tag=v.tag,
            event_type=et,  # type: ignore[arg-type]
            old_state=old,  # type: ignore[arg-type]
            new_state=new,  # type: ignore[arg-type]
            reason=reason,
        )
    )


# --- commands -----------------------------------------------------------------------------------


def apply_command(state: State, cfg: Config, cmd: Command) -> list[ProfileEvent]:
    """Apply an operator/evictor command at the profile's current event time (or ``cmd.time``)."""
    if isinstance(cmd, ImportBehaviour):
        return import_behaviour(state, cfg, cmd)
    out = Out()
    prof = state.profiles.get(cmd.image_name)
    if prof is None:
        return []
    at = cmd.time or prof.now
    cause = cmd.id
    if isinstance(cmd, SetState):
        v = prof.versions.get(cmd.image_tag)
        if v is not None:
            for et in [cmd.event_type] if cmd.event_type else EVENT_TYPES:
                if cmd.state == "warmup" and v.states[et] != "warmup":
                    v.warmup_until = at + cfg.warmup_period
                _set_state(prof, v, et, cmd.state, at, "operator", out, cause)
    elif isinstance(cmd, EvictVersion):
        v = prof.versions.pop(cmd.image_tag, None)
        if v is not None:
            out.events.append(
                VersionEvicted(
                    id=f"pl:{cause}:0", time=at, image_name=prof.image, image_tag=v.tag, last_seen=v.last_seen
                )
            )
    elif isinstance(cmd, ResetProfile):
        if cmd.image_tag is None:
            del state.profiles[cmd.image_name]
            return [ProfileReset(id=f"pl:{cause}:0", time=at, image_name=prof.image)]
        if prof.versions.pop(cmd.image_tag, None) is not None:
            out.events.append(ProfileReset(id=f"pl:{cause}:0", time=at, image_name=prof.image, image_tag=cmd.image_tag))
    _refresh_deadline(prof, cfg)
    return out.events


# --- imports (ImportBehaviour, `vigil profiles import`) -----------------------------------------


def import_behaviour(state: State, cfg: Config, cmd: ImportBehaviour) -> list[ProfileEvent]:
    """Insert the imported behaviours the version does not know yet (union: nothing is removed or
    replaced), creating the profile and the version when missing. Emits what learning emits
    (``VersionFirstSeen``, ``BehaviourAdded``) with ids ``pl:<command id>:<n>``.

    Applied at ``cmd.time``, else the profile's event time (a new profile starts at the later of
    the partition's event time and the imported version's last seen). Imported behaviour is a
    baseline, not new activity: it does not restart the stable clock. Types the learner does not
    learn are skipped; the size threshold holds as for learning."""
    prof = state.profiles.get(cmd.image_name) or _imported_profile(state, cfg, cmd)
    if prof is None:
        return []
    out = Out()
    at = cmd.time or prof.now
    v = prof.versions.get(cmd.image_tag) or _imported_version(prof, cfg, cmd, at, out)
    for et, items in cmd.behaviours.items():
        if et in cfg.event_types:
            for b in items:
                _import_one(cfg, prof, v, et, b, at, out, cmd.id)
    _refresh_deadline(prof, cfg)
    return out.events


def _imported_profile(state: State, cfg: Config, cmd: ImportBehaviour) -> Profile | None:
    """A new profile for an import, or None past ``max_profiles`` (as for events of a new image)."""
    if len(state.profiles) >= cfg.max_profiles:
        return None
    now = cmd.time or max(state.now, cmd.last_seen)
    prof = state.profiles[cmd.image_name] = Profile(image=cmd.image_name, partition=cmd.partition, now=now, versions={})
    return prof


def _imported_version(prof: Profile, cfg: Config, cmd: ImportBehaviour, at: int, out: Out) -> Version:
    """The version as the document describes it: its first/last seen, then its states (``reason=import``)."""
    v = _new_version(prof, cfg, cmd.image_tag, at)
    v.first_seen = cmd.first_seen or at
    v.last_seen = max(cmd.last_seen, v.first_seen)
    if all(cmd.states.get(et, "warmup") != "warmup" for et in EVENT_TYPES):
        v.warmup_until = at  # nothing left in warm-up: no warm-up period to wait for
    versions = {tag: other.last_seen for tag, other in prof.versions.items()}
    out.events.append(
        VersionFirstSeen(id=out.next_id(cmd.id), time=at, image_name=prof.image, image_tag=v.tag, versions=versions)
    )
    for et in EVENT_TYPES:
        if et in cmd.states:
            _set_state(prof, v, et, cmd.states[et], at, "import", out, cmd.id)
        if cmd.last_new.get(et):
            v.last_new[et] = cmd.last_new[et]  # the stable clock goes on from where it was
    return v


def _import_one(
    cfg: Config, prof: Profile, v: Version, et: str, b: LearnedBehaviour, at: int, out: Out, cause: str
) -> None:
    exe, key, mask = imported_key(et, b, cfg.dns_depth)
    known = v.behaviours[et].get(exe, {})
    have = known.get(key, 0)
    if have | mask == have:
        return
    if not have and v.sizes[et] >= cfg.size_threshold:
        full = "unstable" if v.states[et] in _LEARNS else "at_max_size"
        _set_state(prof, v, et, full, at, "size_threshold", out, cause)
        return
    v.sizes[et] += 0 if have else 1
    v.behaviours[et].setdefault(exe, known)[key] = have | mask
    out.events.append(_added(prof, v, et, exe, key, have | mask, at, out.next_id(cause)))


def imported_key(et: str, b: LearnedBehaviour, dns_depth: int) -> tuple[str, str, int]:
    """(executable, key, access mask) of an imported behaviour, as the learner keys what it observes."""
    if et == "exec":
        exe = b.behaviour
        ancestors = b.lineage[:-1] if b.lineage and b.lineage[-1] == exe else b.lineage
        return exe, LINEAGE_SEP.join(ancestors), 1
    if et == "open":
        return b.executable, generalise_path(b.behaviour), access_mask_of(b.access)
    if et == "dns":
        return "", dns_key(b.behaviour, dns_depth), 1
    return b.executable, b.behaviour, 1


# --- reading and snapshots ------------------------------------------------------------------------


def summary(prof: Profile) -> dict[str, Any]:
    """What `vigil profiles show` prints: the profile with its versions (a ProfileSummary as JSON-able data)."""
    data: dict[str, Any] = msgspec.to_builtins(
        ProfileSummary(
            image_name=prof.image,
            partition=prof.partition,
            event_time=prof.now,
            versions=[
                {
                    "image_tag": v.tag,
                    "first_seen": v.first_seen,
                    "last_seen": v.last_seen,
                    "states": dict(v.states),
                    "sizes": dict(v.sizes),
                    "size": sum(v.sizes.values()),
                    "last_new": dict(v.last_new),
                    "starts": v.starts,
                    "replicas": len(v.replicas),
                    "drifts": dict(v.drifts),
                    "last_drift": dict(v.last_drift),
                    "lost": dict(v.lost),
                    "last_lost": v.last_lost,
                }
                for v in prof.versions.values()
            ],
        )
    )
    return data


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(State)


def encode_state(state: State) -> bytes:
    return _state_encoder.encode(state)


def decode_state(data: bytes) -> State:
    return _state_decoder.decode(data)
