"""anomaly-detector core (pure, event time): drift → anomaly alert or suppression,
deduplicated, every verdict recorded as a decision.

Invariants:

- Only inputs and their order decide: ``Drift.time`` and ``DriftBatch.watermark``
  (event time), never the wall clock. Replaying the same DRIFT log yields the
  same outputs, byte for byte.
- One verdict per dedup key ``(image name, event type, behaviour)`` — the
  profile and its behaviour — per window of ``dedup_window`` event time. The
  first drift of a window is alerted (or suppressed); later drifts of the same
  key with ``time < start + dedup_window`` only raise the window's count. When
  the window closes and it folded repeats, one ``dedup`` decision carries the
  count (repeats, the first excluded) and the id of the first verdict.
- A window closes when its clock reaches its end, or when a later drift of the
  same key does. The clock is the event time of the window's first drift's node
  on the DRIFT partition (subject) it came on: ``DriftBatch.clocks`` carries each
  node's time there, so a trace replayed beside a live collector whose ticks are
  on today's wall clock keeps its own time. The empty node (events that name no
  node, and batches from an older learner, which carry only ``watermark``) is
  every node's: its time moves every node's clock, and its windows close on the
  partition's highest time (the single clock of before).
- Suppressed drifts produce a ``suppress`` decision and no alert; their repeats
  are deduplicated like alerts.
- After each batch in which a node's time advanced by at least ``CLOCK_STEP_NS``,
  an :class:`AlertClock` tells the throttler how far that node has got on this
  partition.
- State is the open windows plus a time per (partition, node), nothing else.
  ``handle_batch`` mutates the :class:`State` it is given (a fold step).
  :func:`export` / :func:`restore` turn it into a plain :class:`Snapshot` and
  back; ``restore(export(s))`` continues exactly as ``s`` would.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from msgspec import Struct
from msgspec.structs import replace

from contracts.alerts import Alert, AlertClock, Severity
from contracts.decisions import Decision, about_container
from contracts.events import ClockTicked, DnsQueried, FileOpened, RawEvent
from contracts.profiles import Drift, DriftBatch

NS = 1_000_000_000
CLOCK_STEP_NS = NS // 10
RULE_ID = "anomaly_detection"
ANY_NODE = ""  # events that name no node: their time is every node's

Output = Alert | Decision | AlertClock
Key = tuple[str, str, str]  # (image name, event type, behaviour)


@dataclass(frozen=True)
class Suppression:
    """Every field is a glob; a drift is suppressed when all of them match."""

    image: str = "*"
    executable: str = "*"
    dns: str = "*"
    event_type: str = "*"


@dataclass(frozen=True)
class Config:
    dedup_window_ns: int = 60 * NS  # 0: no deduplication
    suppressions: tuple[Suppression, ...] = ()


@dataclass
class Window:
    start: int
    end: int
    source: str
    first_id: str  # id of the first verdict's decision
    action: str  # alert | suppress
    drift: Drift  # the first drift without its raw event (context for the dedup decision)
    severity: Severity
    repeats: int = 0
    last: int = 0
    node: str = ANY_NODE  # whose clock closes it: the first drift's event's node


@dataclass
class State:
    windows: dict[Key, Window] = field(default_factory=dict)
    ends: dict[tuple[str, str], list[tuple[int, Key]]] = field(default_factory=dict)  # (source, node): heap
    watermarks: dict[str, int] = field(default_factory=dict)  # per source: its highest time over nodes
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> node -> time
    clocks: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> node -> last AlertClock time
    applied: dict[str, int] = field(default_factory=dict)  # per source: seq of the last DriftBatch applied
    held: dict[str, dict[int, DriftBatch]] = field(default_factory=dict)  # per source: batches ahead of a gap
    gaps: int = 0  # gaps given up (see handle_batch); not part of the snapshot


class Snapshot(Struct, kw_only=True):
    """The whole state, in a form msgpack can carry (windows keyed by their drift).
    ``clocks`` is how snapshots held the last clock per partition before per-node
    clocks (read, not written)."""

    windows: list[Window]
    watermarks: dict[str, int]
    clocks: dict[str, int] = {}
    applied: dict[str, int] = {}
    held: dict[str, list[DriftBatch]] = {}
    nodes: dict[str, dict[str, int]] = {}
    node_clocks: dict[str, dict[str, int]] = {}


MAX_HELD = 1000  # DriftBatches held per source while waiting for a missing one


def key_of(drift: Drift) -> Key:
    return (drift.image_name, drift.event_type, drift.behaviour)


def export(state: State) -> Snapshot:
    return Snapshot(
        windows=list(state.windows.values()),
        watermarks=dict(state.watermarks),
        applied=dict(state.applied),
        held={source: [held[seq] for seq in sorted(held)] for source, held in state.held.items()},
        nodes={source: dict(times) for source, times in state.nodes.items()},
        node_clocks={source: dict(times) for source, times in state.clocks.items()},
    )


def restore(snapshot: Snapshot) -> State:
    """The state a snapshot holds; one from before per-node clocks gives its times to the empty node."""
    legacy = not (snapshot.nodes or snapshot.node_clocks)
    nodes = {s: {ANY_NODE: t} for s, t in snapshot.watermarks.items()} if legacy else snapshot.nodes
    clocks = {s: {ANY_NODE: t} for s, t in snapshot.clocks.items()} if legacy else snapshot.node_clocks
    state = State(
        watermarks=dict(snapshot.watermarks),
        nodes={source: dict(times) for source, times in nodes.items()},
        clocks={source: dict(times) for source, times in clocks.items()},
        applied=dict(snapshot.applied),
        held={source: {b.seq: b for b in batches} for source, batches in snapshot.held.items()},
    )
    for window in snapshot.windows:
        key = key_of(window.drift)
        state.windows[key] = window
        heapq.heappush(state.ends.setdefault((window.source, window.node), []), (window.end, key))
    return state


# --- the fold step -----------------------------------------------------------------


def handle_batch(state: State, config: Config, source: str, batch: DriftBatch) -> list[Output]:
    """Apply one DriftBatch from partition ``source`` in its place in the partition's
    order (``seq``); return what to publish, in order.

    A batch ahead of a gap is held until the missing one arrives (the stream can
    hold a partition's batches out of order after a failover); one already applied
    is ignored. Waiting is bounded: past ``MAX_HELD`` held batches the gap is
    given up (counted by the app) and the held ones are applied in order."""
    if batch.seq == 0:  # not numbered: as it comes
        return _apply_batch(state, config, source, batch)
    applied = state.applied.get(source, 0)
    if batch.seq <= applied:
        return []
    held = state.held.setdefault(source, {})
    held[batch.seq] = batch
    out: list[Output] = []
    while held:
        nxt = held.pop(state.applied.get(source, 0) + 1, None)
        if nxt is None:
            if len(held) <= MAX_HELD:
                break
            nxt = held.pop(min(held))  # give the gap up: liveness over order
            state.gaps += 1
        out.extend(_apply_batch(state, config, source, nxt))
        state.applied[source] = nxt.seq
    if not held:
        del state.held[source]
    return out


def _apply_batch(state: State, config: Config, source: str, batch: DriftBatch) -> list[Output]:
    out: list[Output] = []
    for drift in batch.drifts:
        out.extend(handle_drift(state, config, source, drift))
    out.extend(advance(state, source, batch.watermark, batch.clocks))
    return out


def handle_drift(state: State, config: Config, source: str, drift: Drift) -> list[Output]:
    key = key_of(drift)
    out: list[Output] = []
    window = state.windows.get(key)
    if window is not None and drift.time < window.end:
        window.repeats += 1
        window.last = max(window.last, drift.time)
        return out
    if window is not None:
        out.extend(_close(state, key))
    verdict = judge(config, drift)
    out.extend(verdict)
    if config.dedup_window_ns > 0:
        decision = verdict[-1]
        assert isinstance(decision, Decision)
        _open(state, key, source, drift, decision, config.dedup_window_ns)
    return out


def advance(state: State, source: str, watermark: int, clocks: Mapping[str, int] | None = None) -> list[Output]:
    """Move ``source``'s event time: each node's to its time in ``clocks`` (a batch from an
    older learner carries none: ``watermark`` is then the empty node's, i.e. every node's);
    close the windows the clocks passed, in (end, key) order; then the clocks to publish."""
    times = state.nodes.setdefault(source, {})
    moved = {n: t for n, t in sorted((clocks or {ANY_NODE: watermark}).items()) if t > times.get(n, 0)}
    if not moved:
        return []
    times.update(moved)
    state.watermarks[source] = max(state.watermarks.get(source, 0), watermark, *moved.values())
    out: list[Output] = []
    for end, key, node in sorted(_due(state, source)):
        window = state.windows.get(key)
        if window is not None and (window.end, window.source, window.node) == (end, source, node):
            out.extend(_close(state, key))
    return out + _clock_messages(state, source, moved)


def clock_time(state: State, source: str, node: str) -> int:
    """Event time of ``node`` on ``source``: its own or the empty node's, whichever is later;
    for the empty node, the partition's highest."""
    if node == ANY_NODE:
        return state.watermarks.get(source, 0)
    times = state.nodes.get(source, {})
    return max(times.get(node, 0), times.get(ANY_NODE, 0))


def _due(state: State, source: str) -> list[tuple[int, Key, str]]:
    """Pop every (end, key, node) whose node's clock on ``source`` reached its end."""
    due: list[tuple[int, Key, str]] = []
    for (src, node), heap in state.ends.items():
        if src != source:
            continue
        now = clock_time(state, source, node)
        while heap and heap[0][0] <= now:
            end, key = heapq.heappop(heap)
            due.append((end, key, node))
    return due


def _clock_messages(state: State, source: str, moved: Mapping[str, int]) -> list[Output]:
    sent = state.clocks.setdefault(source, {})
    out: list[Output] = []
    for node, time in moved.items():
        if time - sent.get(node, 0) >= CLOCK_STEP_NS:
            sent[node] = time
            clock_id = f"clock:{source}:{node}:{time}" if node else f"clock:{source}:{time}"
            out.append(AlertClock(id=clock_id, time=time, source=source, node=node))
    return out


_NO_EVENT = ClockTicked(time=0)  # the count needs no raw event; dropping it keeps state small


def _open(state: State, key: Key, source: str, drift: Drift, decision: Decision, window_ns: int) -> None:
    end = drift.time + window_ns
    state.windows[key] = Window(
        start=drift.time,
        end=end,
        source=source,
        first_id=decision.id,
        action=decision.action,
        drift=replace(drift, event=_NO_EVENT),
        severity=severity(drift),
        last=drift.time,
        node=drift.event.node,
    )
    heapq.heappush(state.ends.setdefault((source, drift.event.node), []), (end, key))


def _close(state: State, key: Key) -> list[Output]:
    window = state.windows.pop(key)
    if window.repeats == 0:
        return []
    return [dedup_decision(window)]


# --- verdicts ----------------------------------------------------------------------


def judge(config: Config, drift: Drift) -> list[Output]:
    """The first drift of a window: an alert and its decision, or a suppression decision."""
    for index, rule in enumerate(config.suppressions):
        if suppressed_by(rule, drift):
            return [suppress_decision(drift, index, rule)]
    alert = make_alert(drift)
    return [alert, alert_decision(drift, alert)]


def suppressed_by(rule: Suppression, drift: Drift) -> bool:
    image = drift.image_name
    if not (fnmatchcase(image, rule.image) or fnmatchcase(f"{image}:{drift.image_tag}", rule.image)):
        return False
    if not fnmatchcase(drift.event_type, rule.event_type):
        return False
    if rule.executable != "*" and not fnmatchcase(executable(drift), rule.executable):
        return False
    if rule.dns != "*" and not (drift.event_type == "dns" and fnmatchcase(dns_name(drift), rule.dns)):
        return False
    return True


def executable(drift: Drift) -> str:
    process = getattr(drift.event, "process", None)
    if process is not None and process.path:
        return str(process.path)
    return drift.behaviour if drift.event_type == "exec" else ""


def dns_name(drift: Drift) -> str:
    event = drift.event
    return event.dns.name if isinstance(event, DnsQueried) else drift.behaviour


def lineage(event: RawEvent) -> list[str]:
    process = getattr(event, "process", None)
    if process is None:
        return []
    return [*process.ancestors, process.path] if process.path else list(process.ancestors)


def make_alert(drift: Drift) -> Alert:
    return Alert(
        id=f"alert:{drift.id}",
        time=drift.time,
        rule_id=RULE_ID,
        event_type=drift.event_type,
        severity=severity(drift),
        title=title(drift),
        container=drift.container,
        process=getattr(drift.event, "process", None),
        lineage=lineage(drift.event),
        behaviour=drift.behaviour,
        event=drift.event,
        image_tag=drift.image_tag,
        version_state=drift.version_state,
        drift_reason=drift.reason,
        stable_tag=drift.stable_tag,
        event_id=drift.event_id,
    )


def title(drift: Drift) -> str:
    why = "stable profile" if drift.reason == "stable_version" else f"stable in {drift.stable_tag or 'another version'}"
    return f"unexpected {drift.event_type} {drift.behaviour} in {drift.image_name}:{drift.image_tag} ({why})"


def _decision(drift: Drift, **kw: Any) -> Decision:
    return about_container(
        drift.container,
        image_name=drift.image_name,
        image_tag=drift.image_tag,
        source="anomaly",
        event_type="anomaly",
        **kw,
    )


def _details(drift: Drift) -> dict[str, object]:
    return {
        "event_type": drift.event_type,
        "behaviour": drift.behaviour,
        "version_state": drift.version_state,
        "drift_reason": drift.reason,
        "drift_id": drift.id,
    }


def alert_decision(drift: Drift, alert: Alert) -> Decision:
    return _decision(
        drift,
        id=f"anomaly:{drift.id}",
        time=drift.time,
        action="alert",
        rule=RULE_ID,
        message=alert.title,
        severity=alert.severity,
        details={**_details(drift), "alert_id": alert.id},
    )


def suppress_decision(drift: Drift, index: int, rule: Suppression) -> Decision:
    return _decision(
        drift,
        id=f"anomaly:{drift.id}",
        time=drift.time,
        action="suppress",
        rule=f"anomaly_detector.suppressions[{index}]",
        message=f"suppressed: {title(drift)}",
        severity=severity(drift),
        details={
            **_details(drift),
            "suppression": {
                "image": rule.image,
                "executable": rule.executable,
                "dns": rule.dns,
                "event_type": rule.event_type,
            },
        },
    )


def dedup_decision(window: Window) -> Decision:
    drift = window.drift
    return _decision(
        drift,
        id=f"dedup:{window.first_id}",
        time=window.end,
        action="dedup",
        rule=RULE_ID,
        message=f"{window.repeats} repeats of {drift.event_type} {drift.behaviour} folded into {window.first_id}",
        severity=window.severity,
        count=window.repeats,
        details={
            **_details(drift),
            "first_decision_id": window.first_id,
            "verdict": window.action,
            "window_start": window.start,
            "window_end": window.end,
            "last": window.last,
        },
    )


# --- severity ----------------------------------------------------------------------

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh", "mksh", "csh", "tcsh", "fish", "busybox"})
INTERPRETERS = frozenset(
    {
        "python",
        "perl",
        "ruby",
        "node",
        "nodejs",
        "php",
        "lua",
        "luajit",
        "tclsh",
        "wish",
        "pwsh",
        "nc",
        "ncat",
        "socat",
    }
)
WRITABLE_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/")
SENSITIVE_FILES = (
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/root/.ssh/",
    "/var/run/secrets/",
    "/run/secrets/",
    "/etc/kubernetes/",
)
SYSTEM_DIRS = ("/etc/", "/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/lib/", "/usr/lib/", "/boot/")
DANGEROUS_SYSCALLS = frozenset(
    {
        "ptrace",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "kexec_file_load",
        "bpf",
        "mount",
        "umount2",
        "pivot_root",
        "setns",
        "unshare",
        "process_vm_writev",
        "open_by_handle_at",
        "keyctl",
        "add_key",
    }
)
METADATA_ADDRS = ("169.254.169.254", "fd00:ec2::254")
_LEVELS: tuple[Severity, ...] = ("low", "medium", "high", "critical")
O_ACCMODE = 0o3


def severity(drift: Drift) -> Severity:
    """Base severity by event type and what was done (docs/alerts.md has the table);
    one level lower when the drifting version is itself still learning."""
    level = _base(drift)
    if drift.reason == "other_version_stable":
        level = _LEVELS[max(0, _LEVELS.index(level) - 1)]
    return level


def _base(drift: Drift) -> Severity:
    kind, what = drift.event_type, drift.behaviour
    if kind == "exec":
        path = executable(drift) or what
        if path.startswith(WRITABLE_DIRS):
            return "critical"
        return "high" if is_shell_or_interpreter(path) else "medium"
    if kind == "open":
        if what.startswith(SENSITIVE_FILES):
            return "high"
        return "high" if _writes(drift) and what.startswith(SYSTEM_DIRS) else "low"
    if kind == "connect":
        return "high" if any(f":{addr}:" in f"{what}:" for addr in METADATA_ADDRS) else "medium"
    if kind == "syscalls":
        return "high" if what in DANGEROUS_SYSCALLS else "medium"
    return "low"  # dns


def is_shell_or_interpreter(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name in SHELLS or name.rstrip("0123456789.") in INTERPRETERS  # python3.11 → python


def _writes(drift: Drift) -> bool:
    event = drift.event
    if isinstance(event, FileOpened):
        return event.file.flags & O_ACCMODE in (1, 2)
    return False
