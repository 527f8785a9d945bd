"""In-memory simulation of learner + version-evictor, and raw-event builders.

Pure (no bus): feeds raw events through :func:`core.apply_batch`, routes every
profile event through the version-evictor core and applies the evictions it
asks for immediately, as the two services do over the bus. Used by the unit
tests (traces with event times), the benchmark and the docs' examples.
"""

from __future__ import annotations

from typing import Any

from contracts.events import (
    ClockTicked,
    ConnectObserved,
    Container,
    ContainerStarted,
    ContainerStopped,
    DnsQueried,
    DnsQuery,
    EventBatch,
    ExecObserved,
    FileAccess,
    FileOpened,
    NetConnect,
    Process,
    RawEvent,
    SyscallsObserved,
)
from contracts.profiles import Command, Drift, ProfileEvent
from services.profile_learner import core
from services.version_evictor import core as evictor

T0 = 1_767_225_600 * core.SECOND  # 2026-01-01T00:00:00Z


def ns(seconds: float) -> int:
    """Event time ``seconds`` after T0."""
    return T0 + int(seconds * core.SECOND)


def _ctr(image: str, tag: str, cid: str) -> Container:
    return Container(id=cid, image_name=image, image_tag=tag)


def _proc(path: str, ancestors: tuple[str, ...] = ("/usr/bin/containerd-shim",), pid: int = 100) -> Process:
    return Process(pid=pid, ppid=1, path=path, comm=path.rsplit("/", 1)[-1], ancestors=list(ancestors))


def start(t: float, image: str, tag: str = "", cid: str = "c1") -> ContainerStarted:
    return ContainerStarted(time=ns(t), node="n1", container=_ctr(image, tag, cid))


def stop(t: float, image: str, tag: str = "", cid: str = "c1") -> ContainerStopped:
    return ContainerStopped(time=ns(t), node="n1", container=_ctr(image, tag, cid))


def exec_(
    t: float,
    image: str,
    tag: str,
    path: str,
    cid: str = "c1",
    ancestors: tuple[str, ...] = ("/usr/bin/containerd-shim",),
) -> ExecObserved:
    return ExecObserved(time=ns(t), node="n1", container=_ctr(image, tag, cid), process=_proc(path, ancestors))


def open_(
    t: float, image: str, tag: str, path: str, flags: int = 0, exe: str = "/bin/app", cid: str = "c1"
) -> FileOpened:
    return FileOpened(
        time=ns(t),
        node="n1",
        container=_ctr(image, tag, cid),
        process=_proc(exe),
        file=FileAccess(path=path, flags=flags),
    )


def dns_(t: float, image: str, tag: str, name: str, exe: str = "/bin/app", cid: str = "c1") -> DnsQueried:
    return DnsQueried(
        time=ns(t), node="n1", container=_ctr(image, tag, cid), process=_proc(exe), dns=DnsQuery(name=name)
    )


def connect_(
    t: float, image: str, tag: str, addr: str, port: int, proto: str = "tcp", exe: str = "/bin/app", cid: str = "c1"
) -> ConnectObserved:
    return ConnectObserved(
        time=ns(t),
        node="n1",
        container=_ctr(image, tag, cid),
        process=_proc(exe),
        net=NetConnect(addr=addr, port=port, proto=proto),
    )


def syscalls_(
    t: float, image: str, tag: str, names: list[str], exe: str = "/bin/app", cid: str = "c1"
) -> SyscallsObserved:
    return SyscallsObserved(time=ns(t), node="n1", container=_ctr(image, tag, cid), process=_proc(exe), syscalls=names)


def tick(t: float) -> ClockTicked:
    return ClockTicked(time=ns(t), node="n1")


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
