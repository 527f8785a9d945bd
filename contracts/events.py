"""Raw runtime events: what the collector saw, as it travels on the EVENTS stream.

Invariants:
- ``time`` is event time in nanoseconds since the Unix epoch (UTC). Services
  decide on it; nobody reads a wall clock in a core.
- Events travel in an :class:`EventBatch` (msgpack). Sequences are per
  (node, boot, partition); the identity of an event is ``(node, boot,
  partition, first_seq + index)``; the batch id is the ``Nats-Msg-Id`` of the
  message, so a batch published twice is stored once.
- Tags carry the version (``exec.v1``); new fields come only with defaults. A
  breaking change would be a new tag plus a pure upcaster from the old one (none
  exists yet: every tag is still at ``v1``).
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

EventType = Literal["exec", "open", "dns", "connect", "syscalls"]
EVENT_TYPES: tuple[EventType, ...] = ("exec", "open", "dns", "connect", "syscalls")

HOST_CONTAINER_ID = "host"


class Container(Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """Who did it. ``image_name`` is the profile key; empty when not yet known."""

    id: str
    image_name: str = ""
    image_tag: str = ""
    pod: str = ""
    namespace: str = ""
    name: str = ""
    cgroup_id: int = 0

    @property
    def known(self) -> bool:
        return bool(self.image_name)


class Process(Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    pid: int
    ppid: int = 0
    uid: int = 0
    comm: str = ""
    path: str = ""
    argv: list[str] = []
    ancestors: list[str] = []  # executable paths, outermost first


class FileAccess(Struct, frozen=True, kw_only=True, gc=False):
    path: str
    flags: int = 0  # open(2) flags as the kernel saw them


class DnsQuery(Struct, frozen=True, kw_only=True, gc=False):
    name: str
    qtype: str = "A"


class NetConnect(Struct, frozen=True, kw_only=True, gc=False):
    addr: str
    port: int
    proto: str = "tcp"
    family: str = "inet"


class _Raw(Struct, frozen=True, kw_only=True, gc=False, tag_field="kind"):
    time: int
    node: str = ""


class ExecObserved(_Raw, frozen=True, tag="exec.v1"):
    container: Container
    process: Process


class ExitObserved(_Raw, frozen=True, tag="exit.v1"):
    container: Container
    process: Process
    exit_code: int = 0


class FileOpened(_Raw, frozen=True, tag="open.v1"):
    container: Container
    process: Process
    file: FileAccess


class ConnectObserved(_Raw, frozen=True, tag="connect.v1"):
    container: Container
    process: Process
    net: NetConnect


class DnsQueried(_Raw, frozen=True, tag="dns.v1"):
    container: Container
    process: Process
    dns: DnsQuery


class SyscallsObserved(_Raw, frozen=True, tag="syscalls.v1"):
    container: Container
    process: Process
    syscalls: list[str]


class ContainerStarted(_Raw, frozen=True, tag="container_start.v1"):
    container: Container


class ContainerStopped(_Raw, frozen=True, tag="container_stop.v1"):
    container: Container


class EventsLost(_Raw, frozen=True, tag="lost.v1"):
    """The kernel side lost some of this container's behaviour: ``records``
    dropped on a full ring buffer, ``syscalls`` not recorded on a full syscall
    map. A profile learned while its containers lost events may be missing
    behaviour (readiness says so); the behaviour itself is not in the event."""

    container: Container
    records: int = 0
    syscalls: int = 0


class ClockTicked(_Raw, frozen=True, tag="tick.v1"):
    """Advances event time for idle workloads; published by every node each second."""


RawEvent = (
    ExecObserved
    | ExitObserved
    | FileOpened
    | ConnectObserved
    | DnsQueried
    | SyscallsObserved
    | ContainerStarted
    | ContainerStopped
    | EventsLost
    | ClockTicked
)

RAW_EVENT_TYPES: tuple[type[RawEvent], ...] = (
    ExecObserved,
    ExitObserved,
    FileOpened,
    ConnectObserved,
    DnsQueried,
    SyscallsObserved,
    ContainerStarted,
    ContainerStopped,
    EventsLost,
    ClockTicked,
)

# Which profile event type a raw event feeds (None: life-cycle only).
PROFILE_EVENT_TYPE: dict[type[Struct], EventType] = {
    ExecObserved: "exec",
    FileOpened: "open",
    DnsQueried: "dns",
    ConnectObserved: "connect",
    SyscallsObserved: "syscalls",
}


# Header on every EventBatch message: the largest event time in the batch (decimal
# ns). Consumers that only need event time (a watermark) read it instead of
# decoding the batch; a message without it (or with a bad value) is decoded.
MAX_TIME_HEADER = "Vigil-Max-Time"
# Header on an EventBatch the collector may have to hold and resend (its store is
# near full): the number of events in it, to count drops without decoding.
EVENTS_HEADER = "Vigil-Events"


class EventBatch(Struct, frozen=True, kw_only=True, gc=False, tag="batch.v1"):
    """Many raw events in one bus message.

    ``partition`` is the partition the publisher routed the batch to (every
    event in a batch shares it); ``first_seq`` is the (node, boot, partition)
    sequence of ``events[0]``; the others follow without gaps.
    """

    node: str
    boot: str
    first_seq: int
    partition: int = 0
    events: list[RawEvent]

    @property
    def id(self) -> str:
        return batch_id(self.node, self.boot, self.partition, self.first_seq)

    def event_ids(self) -> list[str]:
        return [event_id(self.node, self.boot, self.partition, self.first_seq + i) for i in range(len(self.events))]


def batch_id(node: str, boot: str, partition: int, first_seq: int) -> str:
    return f"ev:{node}:{boot}:{partition}:{first_seq}"


def event_id(node: str, boot: str, partition: int, seq: int) -> str:
    return f"{node}:{boot}:{partition}:{seq}"
