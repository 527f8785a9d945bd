"""Kernel records → raw event contracts, with container and process identity.

Invariants:
- every record yields zero or more contract events and never raises on odd
  input (a DNS payload that is not a query yields nothing and is counted);
- event time = record monotonic timestamp + a wall-clock offset measured once
  by the caller (``clock_offset_ns``), so events are stamped by the kernel,
  not by when Python got round to them;
- identity is looked up per cgroup id and cached against the registry's
  version: a workload registered later shows up on the next event;
- a cgroup's path is learned from its mkdir/rmdir record alone (hierarchy from
  the record's ``root``, never from the file system), so a container that has
  already exited when its records are decoded keeps its identity;
- host processes (cgroups no runtime pattern matches) are dropped or tagged
  ``host`` according to ``host_processes``;
- syscall sets are reported per container as *new* names only (the union is
  what a seccomp profile needs), attributed to the first process seen using them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal, Protocol

from collector import abi, dns, identity, syscall_table
from contracts.events import (
    HOST_CONTAINER_ID,
    ConnectObserved,
    Container,
    ContainerStarted,
    ContainerStopped,
    DnsQueried,
    DnsQuery,
    EventsLost,
    ExecObserved,
    ExitObserved,
    FileAccess,
    FileOpened,
    NetConnect,
    Process,
    RawEvent,
    SyscallsObserved,
)
from contracts.workloads import Workload, container_of

log = logging.getLogger("vigil.collector")

_FAMILIES = {1: "unix", 2: "inet", 10: "inet6"}
MAX_ODD_LOGGED = 100
MAX_ANCESTORS = 16
V2_HIERARCHY = 0  # cgroup_root.hierarchy_id of the v2 (default) hierarchy: the "0::" line of /proc/<pid>/cgroup


class Workloads(Protocol):
    version: int

    def get(self, container_id: str) -> Workload | None: ...


@dataclass
class EnrichStats:
    host_dropped: int = 0
    unknown_layout: int = 0  # events of cgroups that look like a container's but match no layout
    not_dns: int = 0
    cgroup_other_hierarchy: int = 0
    proc_lookups: int = 0


@dataclass
class _Proc:
    path: str
    ppid: int


@dataclass
class Enricher:
    node: str
    paths: identity.CgroupPaths
    workloads: Workloads
    host_processes: Literal["ignore", "tag"] = "ignore"
    clock_offset_ns: int = 0
    max_processes: int = 32_768
    stats: EnrichStats = field(default_factory=EnrichStats)

    def __post_init__(self) -> None:
        self._containers: dict[int, tuple[int, Container | None]] = {}
        self._procs: OrderedDict[int, _Proc] = OrderedDict()
        self._syscalls_seen: dict[str, set[int]] = {}
        self.runtimes: dict[str, str] = {}  # unnamed container id → runtime its layout names
        self.odd_layouts: dict[int, str] = {}  # cgroup id → path that looks like a container's, no layout

    # --- identity -----------------------------------------------------------------

    def container(self, cgroup_id: int, pid: int = 0) -> Container | None:
        """The container of a cgroup, or None when it is a host cgroup to ignore."""
        cached = self._containers.get(cgroup_id)
        if cached is not None and cached[0] == self.workloads.version:
            return cached[1]
        found = self._identify(cgroup_id, self.paths.path(cgroup_id, pid))
        self._containers[cgroup_id] = (self.workloads.version, found)
        return found

    def _identify(self, cgroup_id: int, path: str | None) -> Container | None:
        found = identity.match(path) if path else None
        if found is None:
            if path and cgroup_id not in self.odd_layouts and identity.looks_like_container(path):
                self.odd_layouts[cgroup_id] = path
                if len(self.odd_layouts) <= MAX_ODD_LOGGED:
                    log.warning(
                        "cgroup %s looks like a container's but matches no known layout: counted as "
                        "unknown_layout, not attributed (docs/collector.md, Container identity)",
                        path,
                    )
            if self.host_processes == "tag":
                return Container(id=HOST_CONTAINER_ID, cgroup_id=cgroup_id)
            return None
        cid = found.container_id
        w = self.workloads.get(cid)
        if w is None:
            self.runtimes[cid] = found.runtime
            while len(self.runtimes) > self.max_processes:
                del self.runtimes[next(iter(self.runtimes))]
            return Container(id=cid, cgroup_id=cgroup_id)
        return container_of(w, cgroup_id, cid)

    def runtime_of(self, container_id: str) -> str:
        """The runtime the cgroup layout of an unnamed container points at."""
        return self.runtimes.get(container_id, "")

    def renamed(self) -> set[int]:
        """cgroups whose events went out under one workload and would now carry another
        (the registry changed a running container's entry)."""
        out = set()
        for cg, (_, cached) in self._containers.items():
            if cached is not None and cached.known and cached.id != HOST_CONTAINER_ID:
                w = self.workloads.get(cached.id)
                if w is None or container_of(w, cg, cached.id) != cached:
                    out.add(cg)
        return out

    def time(self, ts: int) -> int:
        return ts + self.clock_offset_ns

    # --- processes ------------------------------------------------------------------

    def _remember(self, pid: int, path: str, ppid: int) -> None:
        self._procs[pid] = _Proc(path, ppid)
        self._procs.move_to_end(pid)
        if len(self._procs) > self.max_processes:
            self._procs.popitem(last=False)

    def _lookup(self, pid: int) -> _Proc | None:
        known = self._procs.get(pid)
        if known is not None or pid <= 0:
            return known
        self.stats.proc_lookups += 1
        try:
            path = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            path = ""
        proc = _Proc(path, _proc_ppid(pid))
        if path or proc.ppid:
            self._remember(pid, path, proc.ppid)
        return proc

    def ancestors(self, ppid: int) -> list[str]:
        chain: list[str] = []
        pid, seen = ppid, set()
        while pid > 0 and pid not in seen and len(chain) < MAX_ANCESTORS:
            seen.add(pid)
            proc = self._lookup(pid)
            if proc is None:
                break
            if proc.path:
                chain.append(proc.path)
            pid = proc.ppid
        chain.reverse()
        return chain

    def process(self, hdr: abi.Header) -> Process:
        proc = self._lookup(hdr.pid)
        return Process(
            pid=hdr.pid, ppid=proc.ppid if proc else 0, uid=hdr.uid, comm=hdr.comm, path=proc.path if proc else ""
        )

    # --- records --------------------------------------------------------------------

    def handle(self, rec: abi.Record) -> list[RawEvent]:
        if isinstance(rec, abi.CgroupChange):
            return self._cgroup(rec)
        hdr = rec.hdr
        container = self.container(hdr.cgroup_id, hdr.pid)
        if container is None:
            if hdr.cgroup_id in self.odd_layouts:
                self.stats.unknown_layout += 1
            else:
                self.stats.host_dropped += 1
            if isinstance(rec, abi.Exec):  # keep lineage even for host parents
                self._remember(hdr.pid, rec.path, rec.ppid or _proc_ppid(hdr.pid))
            return []
        t = self.time(hdr.ts)
        if isinstance(rec, abi.Exec):
            ppid = rec.ppid or _proc_ppid(hdr.pid)
            self._remember(hdr.pid, rec.path, ppid)
            proc = Process(
                pid=hdr.pid,
                ppid=ppid,
                uid=hdr.uid,
                comm=hdr.comm,
                path=rec.path,
                argv=rec.argv,
                ancestors=self.ancestors(ppid),
            )
            return [ExecObserved(time=t, node=self.node, container=container, process=proc)]
        if isinstance(rec, abi.Exit):
            event = ExitObserved(
                time=t, node=self.node, container=container, process=self.process(hdr), exit_code=rec.code
            )
            self._procs.pop(hdr.pid, None)
            return [event]
        if isinstance(rec, abi.Open):
            return [
                FileOpened(
                    time=t,
                    node=self.node,
                    container=container,
                    process=self.process(hdr),
                    file=FileAccess(path=rec.path, flags=rec.flags),
                )
            ]
        if isinstance(rec, abi.Connect):
            return [
                ConnectObserved(
                    time=t, node=self.node, container=container, process=self.process(hdr), net=connect_target(rec)
                )
            ]
        if isinstance(rec, abi.Dns):
            q = dns.parse_question(rec.payload)
            if q is None:
                self.stats.not_dns += 1
                return []
            return [
                DnsQueried(
                    time=t,
                    node=self.node,
                    container=container,
                    process=self.process(hdr),
                    dns=DnsQuery(name=q[0], qtype=q[1]),
                )
            ]
        return []

    def _cgroup(self, rec: abi.CgroupChange) -> list[RawEvent]:
        # The kernel says which hierarchy the directory is in; asking the file
        # system instead loses a short-lived container whose cgroup is already
        # gone when its mkdir is decoded (and every record of it with it).
        if rec.root != V2_HIERARCHY:
            self.stats.cgroup_other_hierarchy += 1
            return []
        self.paths.learn(rec.id, rec.path)
        self._containers.pop(rec.id, None)
        cid = identity.container_id(rec.path)
        if cid is None:
            return []
        container = self._identify(rec.id, rec.path)
        assert container is not None
        t = self.time(rec.hdr.ts)
        if rec.started:
            return [ContainerStarted(time=t, node=self.node, container=container)]
        # cgroup ids are never reused within a boot: the path stays cached (LRU) so
        # late records of the stopped container (syscall drains) keep their identity.
        self._syscalls_seen.pop(cid, None)
        return [ContainerStopped(time=t, node=self.node, container=container)]

    def lost(self, cgroup_id: int, records: int, syscalls: int, now_ns: int) -> list[RawEvent]:
        """What the kernel side lost of a container since the last drain (host cgroups: nothing)."""
        container = self.container(cgroup_id)
        if container is None or container.id == HOST_CONTAINER_ID:
            return []
        return [EventsLost(time=now_ns, node=self.node, container=container, records=records, syscalls=syscalls)]

    def syscalls(self, cgroup_id: int, pid: int, nrs: list[int], now_ns: int) -> list[RawEvent]:
        container = self.container(cgroup_id, pid)
        if container is None or not nrs:
            return []
        seen = self._syscalls_seen.setdefault(container.id, set())
        new = [n for n in nrs if n not in seen]
        if not new:
            return []
        seen.update(new)
        proc = self._lookup(pid)
        process = Process(pid=pid, ppid=proc.ppid if proc else 0, path=proc.path if proc else "")
        names = sorted(syscall_table.name(n) for n in new)
        return [SyscallsObserved(time=now_ns, node=self.node, container=container, process=process, syscalls=names)]


def connect_target(rec: abi.Connect) -> NetConnect:
    family = _FAMILIES.get(rec.family, f"af{rec.family}")
    if rec.family == 2:
        addr = str(ipaddress.IPv4Address(rec.addr[:4]))
    elif rec.family == 10:
        addr = str(ipaddress.IPv6Address(rec.addr[:16]))
    else:
        addr = ""
    return NetConnect(addr=addr, port=rec.port, proto="unix" if rec.family == 1 else "tcp", family=family)


def _proc_ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(b")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return 0
