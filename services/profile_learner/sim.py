"""Raw-event builders with event times (seconds after T0): the unit tests' traces,
the benchmark's and the docs' examples. The simulation of learner and
version-evictor folded together is ``tests/sim.py`` (a service imports no other
service)."""

from __future__ import annotations

from contracts.events import (
    ClockTicked,
    ConnectObserved,
    Container,
    ContainerStarted,
    ContainerStopped,
    DnsQueried,
    DnsQuery,
    ExecObserved,
    FileAccess,
    FileOpened,
    NetConnect,
    Process,
    SyscallsObserved,
)
from services.profile_learner import core

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
