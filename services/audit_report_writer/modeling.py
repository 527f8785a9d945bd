"""Behaviour models (pure): fold observed behaviour per replica, merge replicas with coverage.

Two sources feed the same fold, each turned into :class:`Observation` values:

- learned behaviour: the PROFILES stream's ``BehaviourAdded`` events of one
  (image, tag) (:func:`from_behaviour`) — what ``vigil profiles export`` models;
- a modelling window: the raw events of the selected containers inside the
  window (:func:`from_raw`) — what a ``StartModeling`` request models, per
  container, so replicas can be told apart.

A :class:`Replica` is what one container did (sets, no counts); a selected
container seen in the window that did nothing Vigil captures is a replica too
(an empty one). The merge (:func:`build_model`) is a union over replicas; every
rule carries ``coverage`` = how many replicas showed it, and the model carries
``replicas`` = how many there were, so a rule with ``coverage < replicas`` is
something only some replicas did. ``syscall_coverage`` is SPO's coverage
document (``recordingmerger/coverage.go``: ``version``, ``total`` — every
replica, those without a syscall included — and the count per syscall). A file
rule that another rule's glob covers with at least its permissions is folded
into that rule (SPO's filesystem merge), its replicas counted there.

File permissions follow AppArmor: ``r``, ``w``, ``a`` (append; dropped when
``w`` is present, which implies it), ``m`` (mapped executable: opened for
execution or a library the loader maps) and ``ix`` (executed, inherit the
profile). Paths are generalised by :mod:`paths`.

A modelling window (:class:`Window`) lives on its image's EVENTS partition and
on event time as the nodes report it (docs/runtime.md): it closes when a node's
clock on that partition reaches its end — a node whose clock was before the end
when the window first heard from it (a live collector already far past a
trace's window never closes it; events that name no node always may). A
request without a start begins at the partition's event time, or at the first
event on the partition when there is none yet.

Invariants: no I/O, no clock; the model is a function of the *set* of
observations per replica (order and duplicates change nothing); every list in
the model is sorted.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from contracts.events import (
    ConnectObserved,
    Container,
    DnsQueried,
    ExecObserved,
    FileOpened,
    RawEvent,
    SyscallsObserved,
)
from contracts.models import (
    OPT_OUT_PREFIX,
    OPT_OUT_VALUE,
    BehaviourModel,
    EgressRule,
    ExecRule,
    FileRule,
    ModelStatus,
    ModelStatusChanged,
    NameRule,
    Network,
    StartModeling,
    SyscallCoverage,
    SyscallRule,
)
from contracts.profiles import BehaviourAdded, ProfileEvent, ProfileReset, VersionEvicted
from contracts.subjects import partition_of
from services.audit_report_writer.core import rfc3339
from services.audit_report_writer.paths import EXEC, generalise, is_library

UNATTRIBUTED = ""  # replica key of learned behaviour (BehaviourAdded names no container)
ANY_NODE = ""  # events that name no node: their clock is every node's

O_ACCMODE = 0o3
O_WRONLY = 0o1
O_RDWR = 0o2
O_APPEND = 0o2000

PERM_ORDER = ("m", "r", "w", "a", "ix")


@dataclass(frozen=True)
class Observation:
    """One behaviour of one replica, already in model terms."""

    replica: str
    event_type: str  # exec | open | connect | dns | syscalls
    behaviour: str
    access: str = ""  # open: subset of "rwax"
    lineage: tuple[str, ...] = ()


@dataclass
class Replica:
    """What one container did: sets keyed by generalised rule."""

    execs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    files: dict[str, set[str]] = field(default_factory=dict)
    egress: set[tuple[str, str, int]] = field(default_factory=set)
    dns: set[str] = field(default_factory=set)
    syscalls: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.execs or self.files or self.egress or self.dns or self.syscalls)


# --- sources -> observations ---------------------------------------------------------


def from_behaviour(event: BehaviourAdded) -> Observation:
    return Observation(
        replica=UNATTRIBUTED,
        event_type=event.event_type,
        behaviour=event.behaviour,
        access=event.access,
        lineage=tuple(event.lineage),
    )


def access_of(flags: int) -> str:
    """open(2) flags -> access letters: ``r``, ``w``, or ``a`` for a write that can only append."""
    mode = flags & O_ACCMODE
    letters = "r" if mode in (0, O_RDWR) else ""
    if mode in (O_WRONLY, O_RDWR):
        letters += "a" if flags & O_APPEND else "w"
    return letters


def replica_key(container_id: str, container_name: str) -> str:
    return container_name and f"{container_name}@{container_id}" or container_id


def from_raw(event: RawEvent) -> list[Observation]:
    """Observations in one raw event (life-cycle events and ticks give none)."""
    if isinstance(event, ExecObserved):
        key = replica_key(event.container.id, event.container.name)
        lineage = (*event.process.ancestors, event.process.path)
        return [Observation(key, "exec", event.process.path, lineage=lineage)]
    if isinstance(event, FileOpened):
        key = replica_key(event.container.id, event.container.name)
        return [Observation(key, "open", event.file.path, access=access_of(event.file.flags))]
    if isinstance(event, ConnectObserved):
        key = replica_key(event.container.id, event.container.name)
        return [Observation(key, "connect", f"{event.net.proto}:{event.net.addr}:{event.net.port}")]
    if isinstance(event, DnsQueried):
        key = replica_key(event.container.id, event.container.name)
        return [Observation(key, "dns", event.dns.name)]
    if isinstance(event, SyscallsObserved):
        key = replica_key(event.container.id, event.container.name)
        return [Observation(key, "syscalls", name) for name in event.syscalls]
    return []


def opted_out(annotations: Mapping[str, str]) -> frozenset[str]:
    """Container names excluded by ``container.models.vigil.dev/<name>: unconfined``."""
    return frozenset(
        key[len(OPT_OUT_PREFIX) :]
        for key, value in annotations.items()
        if key.startswith(OPT_OUT_PREFIX) and value == OPT_OUT_VALUE
    )


# --- the fold --------------------------------------------------------------------------

_CONNECT = re.compile(r"^(?P<proto>[a-z0-9]+):(?P<addr>.*):(?P<port>[0-9]+)$")


def _add_file(replica: Replica, path: str, letters: set[str]) -> bool:
    held = replica.files.setdefault(generalise(path, perms_text(letters)), set())
    new = not letters <= held
    held |= letters
    return new


def _add(items: set[Any], item: Any) -> bool:
    new = item not in items
    items.add(item)
    return new


def observe(replicas: dict[str, Replica], obs: Observation) -> bool:
    """Fold one observation into its replica (idempotent); True when it added something."""
    new = obs.replica not in replicas
    replica = replicas.setdefault(obs.replica, Replica())
    if obs.event_type == "exec":
        path = generalise(obs.behaviour, EXEC)
        known = replica.execs.get(path)
        lineage = obs.lineage if known is None else min(known, obs.lineage)  # order-independent
        new |= known != lineage
        replica.execs[path] = lineage
        new |= _add_file(replica, obs.behaviour, {"r", "ix"})
    elif obs.event_type == "open":
        letters = {"m" if c == "x" else c for c in obs.access if c in "rwax"} or {"r"}
        if is_library(obs.behaviour) and "r" in letters:
            letters.add("m")
        new |= _add_file(replica, obs.behaviour, letters)
    elif obs.event_type == "connect":
        m = _CONNECT.match(obs.behaviour)
        if m:
            new |= _add(replica.egress, (m["proto"], m["addr"], int(m["port"])))
    elif obs.event_type == "dns":
        new |= _add(replica.dns, obs.behaviour)
    elif obs.event_type == "syscalls":
        new |= _add(replica.syscalls, obs.behaviour)
    return new


def fold(observations: Iterable[Observation], replicas: dict[str, Replica] | None = None) -> dict[str, Replica]:
    replicas = {} if replicas is None else replicas
    for obs in observations:
        observe(replicas, obs)
    return replicas


# --- merge -> model --------------------------------------------------------------------


def perms_text(letters: Iterable[str]) -> str:
    """AppArmor permission string in a fixed order; ``a`` is dropped when ``w`` is present."""
    present = set(letters)
    if "w" in present:
        present.discard("a")
    return "".join(p for p in PERM_ORDER if p in present)


def socket_of(proto: str, addr: str) -> str:
    family = "inet6" if ":" in addr else "inet"
    kind = {"tcp": "stream", "udp": "dgram"}.get(proto, proto)
    return "unix stream" if proto == "unix" else f"{family} {kind}"


def profile_name(image_name: str, image_tag: str) -> str:
    raw = f"vigil-{image_name}-{image_tag or 'any'}".lower()
    return re.sub(r"[^a-z0-9_.-]", "_", raw)


K = TypeVar("K", bound=Hashable)


def _count(sets: Iterable[Iterable[K]]) -> dict[K, int]:
    counts: dict[K, int] = {}
    for items in sets:
        for item in set(items):
            counts[item] = counts.get(item, 0) + 1
    return counts


def _file_rules(reps: list[Replica]) -> dict[str, tuple[set[str], set[int]]]:
    """Every file rule: its permissions and the replicas (indexes) that showed it, with the
    rules another rule's glob covers folded into that rule (SPO's filesystem merge)."""
    rules: dict[str, tuple[set[str], set[int]]] = {}
    for i, r in enumerate(reps):
        for path, letters in r.files.items():
            perms, who = rules.setdefault(path, (set(), set()))
            perms |= letters
            who.add(i)
    globs = [(g, g.partition("*")[0], glob_regex(g)) for g in sorted(rules) if "*" in g]
    for path in sorted(rules):
        cover = _covering(rules, globs, path)
        if cover is not None:
            rules[cover][1].update(rules.pop(path)[1])
    return rules


Glob = tuple[str, str, re.Pattern[str]]  # (glob, its literal prefix, its regex)


def _covering(rules: dict[str, tuple[set[str], set[int]]], globs: list[Glob], path: str) -> str | None:
    """The first glob rule (in path order) that matches ``path`` with at least its permissions.
    A tree glob (``**``) is never folded: it may match more than any other rule."""
    if "**" in path:
        return None
    perms = rules[path][0]
    for glob, prefix, regex in globs:
        if path.startswith(prefix) and glob != path and glob in rules and perms <= rules[glob][0]:
            if regex.fullmatch(path):
                return glob
    return None


def glob_regex(glob: str) -> re.Pattern[str]:
    """AppArmor's ``*`` (within a segment) and ``**`` (across), each matching at least one character:
    a rule is folded only where the glob surely matches it."""
    parts = re.split(r"(\*\*|\*)", glob)
    return re.compile("".join(".+" if p == "**" else "[^/]+" if p == "*" else re.escape(p) for p in parts))


def build_model(
    replicas: Mapping[str, Replica],
    *,
    image_name: str,
    image_tag: str = "",
    source: str = "",
    start: int = 0,
    end: int = 0,
) -> BehaviourModel:
    """Union of the replicas with a coverage count per rule; sorted and stable."""
    reps = [replicas[k] for k in sorted(replicas)]
    execs = _count(r.execs for r in reps)
    lineage = {p: ln for r in reversed(reps) for p, ln in r.execs.items()}
    files = _file_rules(reps)
    egress = _count(r.egress for r in reps)
    dns = _count(r.dns for r in reps)
    syscalls = _count(r.syscalls for r in reps)
    sockets = {socket_of(proto, addr) for (proto, addr, _port) in egress}
    if dns:
        sockets.add("inet dgram")
    return BehaviourModel(
        profile_name=profile_name(image_name, image_tag),
        image_name=image_name,
        image_tag=image_tag,
        source=source,
        start=start,
        end=end,
        replicas=len(reps),
        containers=sorted(k for k in replicas if k != UNATTRIBUTED),
        executions=[ExecRule(path=p, lineage=list(lineage[p]), coverage=c) for p, c in sorted(execs.items())],
        files=[
            FileRule(path=p, perms=perms_text(perms), coverage=len(who)) for p, (perms, who) in sorted(files.items())
        ],
        network=Network(
            sockets=sorted(sockets),
            egress=[EgressRule(proto=k[0], addr=k[1], port=k[2], coverage=c) for k, c in sorted(egress.items())],
            dns=[NameRule(name=n, coverage=c) for n, c in sorted(dns.items())],
        ),
        syscalls=[SyscallRule(name=n, coverage=c) for n, c in sorted(syscalls.items())],
        syscall_coverage=syscall_coverage(len(reps), syscalls),
    )


def syscall_coverage(total: int, counts: Mapping[str, int]) -> SyscallCoverage | None:
    """SPO's coverage document: ``total`` replicas merged and, per syscall, how many made it;
    none when nothing was merged (SPO sets no annotation for zero partials)."""
    if total == 0:
        return None
    return SyscallCoverage(total=total, syscalls=dict(sorted(counts.items())))


def model_of_learned(events: Iterable[BehaviourAdded], image_name: str, image_tag: str) -> BehaviourModel:
    """The model of one learned profile version (``vigil profiles export``)."""
    chosen = [e for e in events if e.image_name == image_name and (e.image_tag or "") == image_tag]
    replicas = fold(from_behaviour(e) for e in chosen)
    times = [e.time for e in chosen] or [0]
    return build_model(
        replicas, image_name=image_name, image_tag=image_tag, source="learned-profile", start=min(times), end=max(times)
    )


# --- modelling windows (StartModeling requests, event time) -----------------------------


@dataclass
class Window:
    """One open request: what its selected containers did in ``[start, end)`` of event time,
    on its image's partition. ``met``: each node's first time on that partition while the window
    was open (a node met at or past ``end`` is on another clock and never closes it)."""

    request: StartModeling
    start: int
    end: int
    opt_out: frozenset[str]
    replicas: dict[str, Replica] = field(default_factory=dict)
    partition: int = 0
    met: dict[str, int] = field(default_factory=dict)
    pending: bool = False  # no start yet: it begins at the partition's first event time

    def selects(self, container: Container) -> bool:
        req = self.request
        if container.image_name != req.image_name:
            return False
        if req.image_tag and container.image_tag != req.image_tag:
            return False
        names = {container.name, container.id} - {""}
        if req.containers and not names & set(req.containers):
            return False
        return not names & self.opt_out

    def closes_on(self, node: str, time: int) -> bool:
        """Whether ``node``'s clock at ``time`` ends the window (see the class docstring)."""
        return time >= self.end and (node == ANY_NODE or self.met.get(node, self.end) < self.end)


@dataclass
class Windows:
    """Every open window and the event time seen: per EVENTS partition (``watermarks``) and overall."""

    open: dict[str, Window] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # request ids already accepted (duplicates ignored)
    watermark: int = 0
    revision: int = 0  # bumped whenever a window opens, learns something new or closes (snapshot when it moves)
    partitions: int = 1  # nats.partitions: an image's events are on partition_of(image)
    watermarks: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Closed:
    """A window that reached its end: its model, or why there is none; ``time`` and
    ``clock`` say what closed it (the node's clock, on which partition)."""

    request: StartModeling
    model: BehaviourModel | None
    reason: str = ""
    time: int = 0
    clock: str = ""


def status(
    req: StartModeling, time: int, state: ModelStatus, reason: str = "", **extra: list[str]
) -> ModelStatusChanged:
    return ModelStatusChanged(
        id=f"{req.id}:{state}",
        time=time,
        request_id=req.id,
        image_name=req.image_name,
        image_tag=req.image_tag,
        status=state,
        reason=reason,
        **extra,
    )


def request(state: Windows, req: StartModeling) -> list[ModelStatusChanged]:
    """Open a window (``Modeling``), or refuse it (``Error``); a repeated request id is a no-op."""
    if req.id in state.seen:
        return []
    state.seen.add(req.id)
    part = partition_of(req.image_name, state.partitions)
    start = req.time or state.watermarks.get(part, 0)
    if not req.image_name:
        return [status(req, start, "Error", "image_name is empty")]
    if req.duration <= 0:
        return [status(req, start, "Error", f"duration must be > 0 ns, got {req.duration}")]
    window = Window(req, start, start + req.duration, opted_out(req.annotations), partition=part, pending=not start)
    state.open[req.id] = window
    state.revision += 1
    return [status(req, start, "Modeling")]


def clock_name(node: str, partition: int, time: int) -> str:
    who = f"node {node!r}" if node else "events that name no node"
    return f"the clock of {who} on EVENTS partition {partition} at {rfc3339(time)}"


def _close(window: Window, time: int, clock: str) -> Closed:
    req = window.request
    if all(r.empty for r in window.replicas.values()):
        seen = f"{len(window.replicas)} selected containers seen, none did" if window.replicas else "nothing seen"
        reason = f"no behaviour observed for the selector in the window ({seen}; closed by {clock})"
        return Closed(req, None, reason, time, clock)
    model = build_model(
        window.replicas,
        image_name=req.image_name,
        image_tag=req.image_tag,
        source=f"window:{req.id}",
        start=window.start,
        end=window.end,
    )
    return Closed(req, model, "", time, clock)


def advance(state: Windows, event: RawEvent, partition: int = 0) -> list[Closed]:
    """Fold one raw event of EVENTS ``partition`` into the windows of that partition; close
    the windows its node's clock ended, in (end, request id) order."""
    t = event.time
    state.watermark = max(state.watermark, t)
    state.watermarks[partition] = max(state.watermarks.get(partition, 0), t)
    mine = [w for w in state.open.values() if w.partition == partition]
    done = sorted((w for w in mine if _step(state, w, event)), key=lambda w: (w.end, w.request.id))
    for window in done:
        del state.open[window.request.id]
        state.revision += 1
    return [_close(w, t, clock_name(event.node, partition, t)) for w in done]


def _step(state: Windows, window: Window, event: RawEvent) -> bool:
    """Fold ``event`` into ``window``; True when the event's clock ends it."""
    t, node = event.time, event.node
    if window.pending:
        window.start, window.end, window.pending = t, t + window.request.duration, False
        state.revision += 1
    if node not in window.met:
        window.met[node] = t
        state.revision += 1
    container = getattr(event, "container", None)
    if container is not None and window.start <= t < window.end and window.selects(container):
        key = replica_key(container.id, container.name)
        if key not in window.replicas:
            window.replicas[key] = Replica()
            state.revision += 1
        for obs in from_raw(event):
            if observe(window.replicas, obs):
                state.revision += 1
    return window.closes_on(node, t)


def learned_behaviour(events: Iterable[ProfileEvent]) -> list[BehaviourAdded]:
    """The BehaviourAdded events still in force: a reset or an eviction forgets what came before it."""
    kept: list[BehaviourAdded] = []
    for event in events:
        if isinstance(event, BehaviourAdded):
            kept.append(event)
        elif isinstance(event, (ProfileReset, VersionEvicted)):
            whole = isinstance(event, ProfileReset) and not event.image_tag
            kept = [
                e for e in kept if e.image_name != event.image_name or (not whole and e.image_tag != event.image_tag)
            ]
    return kept
