"""Python mirror of bpf/include/events.h and the opcode registry that decodes
ring-buffer records.

Invariants:
- one ``struct`` format per opcode, built from the same field list the ABI
  test compares with clang's layout (:data:`LAYOUTS`);
- :func:`decode` never raises on kernel input: an unknown opcode, a short
  record or a size mismatch is counted in :class:`DecodeStats` and skipped;
- decoding is pure (bytes in, records out), so it is unit-tested without BPF.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

ABI_VERSION = 1
PATH_LEN = 256
ARGC = 8
ARG_LEN = 64
DNS_LEN = 256
SYSCALL_WORDS = 8

OP_EXEC, OP_EXIT, OP_OPEN, OP_CONNECT, OP_DNS, OP_CGROUP_MKDIR, OP_CGROUP_RMDIR = range(1, 8)
CNT_SUBMITTED, CNT_DROPPED, CNT_DEDUP_HIT, CNT_DEDUP_MISS, CNT_SYSCALLS_LOST = range(5)
COUNTER_NAMES = ("submitted", "dropped", "dedup_hits", "dedup_misses", "syscalls_lost")

# (field name, struct format) per record, in C order; "hdr" expands to HDR.
HDR: tuple[tuple[str, str], ...] = (
    ("ts", "Q"),
    ("cgroup_id", "Q"),
    ("pid", "I"),
    ("tid", "I"),
    ("uid", "I"),
    ("op", "H"),
    ("size", "H"),
    ("comm", "16s"),
)
LAYOUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "vigil_hdr": HDR,
    "vigil_exec": (*HDR, ("ppid", "I"), ("argc", "I"), ("path", f"{PATH_LEN}s"), ("argv", f"{ARGC * ARG_LEN}s")),
    "vigil_exit": (*HDR, ("code", "i"), ("_pad", "I")),
    "vigil_open": (*HDR, ("flags", "i"), ("_pad", "I"), ("path", f"{PATH_LEN}s")),
    "vigil_connect": (*HDR, ("family", "H"), ("port", "H"), ("_pad", "I"), ("addr", "16s")),
    "vigil_dns": (*HDR, ("len", "H"), ("port", "H"), ("_pad", "I"), ("payload", f"{DNS_LEN}s")),
    "vigil_cgroup": (*HDR, ("id", "Q"), ("root", "i"), ("level", "i"), ("path", f"{PATH_LEN}s")),
    "vigil_lost": (("records", "Q"), ("syscalls", "Q")),  # a map value, not a record: no header
}
STRUCTS = {name: struct.Struct("<" + "".join(f for _, f in fields)) for name, fields in LAYOUTS.items()}
OP_STRUCT = {
    OP_EXEC: "vigil_exec",
    OP_EXIT: "vigil_exit",
    OP_OPEN: "vigil_open",
    OP_CONNECT: "vigil_connect",
    OP_DNS: "vigil_dns",
    OP_CGROUP_MKDIR: "vigil_cgroup",
    OP_CGROUP_RMDIR: "vigil_cgroup",
}
_HDR = STRUCTS["vigil_hdr"]


def offsets(name: str) -> dict[str, tuple[int, int]]:
    """Field → (offset, size) of a mirrored struct (for the ABI test)."""
    out: dict[str, tuple[int, int]] = {}
    pos = 0
    for fname, fmt in LAYOUTS[name]:
        size = struct.calcsize("<" + fmt)
        out[fname] = (pos, size)
        pos += size
    return out


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class Header(NamedTuple):
    ts: int
    cgroup_id: int
    pid: int
    tid: int
    uid: int
    comm: str


class Exec(NamedTuple):
    hdr: Header
    ppid: int
    path: str
    argv: list[str]


class Exit(NamedTuple):
    hdr: Header
    code: int


class Open(NamedTuple):
    hdr: Header
    flags: int
    path: str


class Connect(NamedTuple):
    hdr: Header
    family: int
    port: int
    addr: bytes


class Dns(NamedTuple):
    hdr: Header
    port: int
    payload: bytes


class CgroupChange(NamedTuple):
    hdr: Header
    started: bool  # mkdir (True) or rmdir (False)
    id: int
    root: int
    level: int
    path: str


Record = Exec | Exit | Open | Connect | Dns | CgroupChange


def _hdr(v: tuple) -> Header:  # type: ignore[type-arg]
    return Header(v[0], v[1], v[2], v[3], v[4], cstr(v[7]))


def _exec(v: tuple) -> Exec:  # type: ignore[type-arg]
    argc = min(v[9], ARGC)
    blob = v[11]
    argv = [cstr(blob[i * ARG_LEN : (i + 1) * ARG_LEN]) for i in range(argc)]
    return Exec(_hdr(v), v[8], cstr(v[10]), argv)


def _exit(v: tuple) -> Exit:  # type: ignore[type-arg]
    return Exit(_hdr(v), v[8])


def _open(v: tuple) -> Open:  # type: ignore[type-arg]
    return Open(_hdr(v), v[8], cstr(v[10]))


def _connect(v: tuple) -> Connect:  # type: ignore[type-arg]
    return Connect(_hdr(v), v[8], v[9], v[11])


def _dns(v: tuple) -> Dns:  # type: ignore[type-arg]
    return Dns(_hdr(v), v[9], v[11][: v[8]])


def _cgroup(started: bool) -> Callable[[tuple], CgroupChange]:  # type: ignore[type-arg]
    def build(v: tuple) -> CgroupChange:  # type: ignore[type-arg]
        return CgroupChange(_hdr(v), started, v[8], v[9], v[10], cstr(v[11]))

    return build


# The opcode registry: op → (struct, builder).
REGISTRY: dict[int, tuple[struct.Struct, Callable[[tuple], Record]]] = {  # type: ignore[type-arg]
    OP_EXEC: (STRUCTS["vigil_exec"], _exec),
    OP_EXIT: (STRUCTS["vigil_exit"], _exit),
    OP_OPEN: (STRUCTS["vigil_open"], _open),
    OP_CONNECT: (STRUCTS["vigil_connect"], _connect),
    OP_DNS: (STRUCTS["vigil_dns"], _dns),
    OP_CGROUP_MKDIR: (STRUCTS["vigil_cgroup"], _cgroup(True)),
    OP_CGROUP_RMDIR: (STRUCTS["vigil_cgroup"], _cgroup(False)),
}


@dataclass
class DecodeStats:
    decoded: int = 0
    unknown_op: int = 0
    short: int = 0
    size_mismatch: int = 0
    per_op: dict[int, int] = field(default_factory=dict)


def decode(data: bytes, stats: DecodeStats) -> Record | None:
    """One ring-buffer record → a typed record, or None (counted) if unusable."""
    if len(data) < _HDR.size:
        stats.short += 1
        return None
    op, size = struct.unpack_from("<HH", data, 28)
    entry = REGISTRY.get(op)
    if entry is None:
        stats.unknown_op += 1
        return None
    st, build = entry
    if len(data) < st.size:
        stats.short += 1
        return None
    if size != st.size:
        stats.size_mismatch += 1
        return None
    stats.decoded += 1
    stats.per_op[op] = stats.per_op.get(op, 0) + 1
    return build(st.unpack_from(data))


def encode(name: str, **values: object) -> bytes:
    """Pack a record from field values (tests and the ABI check); missing fields are zero."""
    fields = LAYOUTS[name]
    defaults: dict[str, object] = {f: (b"" if fmt.endswith("s") else 0) for f, fmt in fields}
    defaults.update({"size": STRUCTS[name].size})
    defaults.update(values)
    return STRUCTS[name].pack(*(defaults[f] for f, _ in fields))
