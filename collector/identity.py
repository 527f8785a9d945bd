"""Container identity: cgroup id → cgroup path → container id.

Invariants:
- :func:`match` is pure and table-driven (:data:`PATTERNS`): it names the
  runtime and the container id; a path no layout matches is a host path
  (``None``), and one that still looks like a container's is reported by
  :func:`looks_like_container` so the caller can say so;
- :class:`CgroupPaths` learns paths from cgroup mkdir events first and falls
  back to ``/proc/<pid>/cgroup`` (checked against the directory's inode, which
  *is* the cgroup id) and finally a walk of the cgroup v2 mount; answers are
  cached, misses too (bounded), so a hot unknown id costs one dict lookup.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

_HEX64 = "[0-9a-f]{64}"
_END = r"(?:\.scope)?(?=/|$)"  # a container's own directory, with or without the systemd unit suffix


ANY = "any"  # the layout does not say which runtime made it: ask every source


class Match(NamedTuple):
    """What a cgroup path says about the container in it."""

    runtime: str  # docker | podman | containerd | cri-o | any
    container_id: str
    layout: str  # the PATTERNS entry that matched (counters, docs)
    namespace: str = ""  # containerd namespace (cgroupfs driver, ``/<namespace>/<id>``)


# (layout, runtime, regex). Group ``id`` is the container id, ``ns`` a containerd
# namespace. Every layout these runtimes produce with the systemd and the cgroupfs
# managers, cgroup v1-hybrid and v2; tests/unit/test_collector_identity.py holds
# the cases, with where upstream (Datadog, Tetragon, Falco) saw each.
PATTERNS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("cri-containerd-<id>.scope", "containerd", re.compile(rf"cri-containerd-(?P<id>{_HEX64}){_END}")),
    # containerd without SystemdCgroup under a systemd kubelet: the "slice:prefix:id" string is the directory
    ("<slice>:cri-containerd:<id>", "containerd", re.compile(rf":cri-containerd:(?P<id>{_HEX64})(?=/|$)")),
    ("nerdctl-<id>.scope", "containerd", re.compile(rf"nerdctl-(?P<id>{_HEX64}){_END}")),
    ("crio-<id>[.scope]", "cri-o", re.compile(rf"crio-(?P<id>{_HEX64}){_END}")),
    ("docker-<id>.scope", "docker", re.compile(rf"docker-(?P<id>{_HEX64}){_END}")),
    # podman: cgroupfs (libpod_parent/libpod-<id>), systemd (libpod-<id>.scope[/container]), --cgroups=split
    ("libpod-[payload-]<id>[.scope]", "podman", re.compile(rf"libpod-(?:payload-)?(?P<id>{_HEX64}){_END}")),
    ("/docker/<id>", "docker", re.compile(rf"/docker/(?P<id>{_HEX64})(?=/|$)")),
    ("/ecs/<task>/<id>", "docker", re.compile(rf"^/ecs/[0-9a-f-]+/(?P<id>{_HEX64})(?=/|$)")),
    # kubelet with the cgroupfs driver: a bare id anywhere under kubepods (qos and pod levels, kind's /kubelet/)
    ("kubepods…/<id>", ANY, re.compile(rf"(?:^|/)kubepods[^/]*/(?:[^/]+/)*?(?P<id>{_HEX64})(?=/|$)")),
    ("/<namespace>/<id>", ANY, re.compile(rf"^/(?P<ns>[^/]+)/(?P<id>{_HEX64})(?=/|$)")),
    ("/<id>", ANY, re.compile(rf"^/(?P<id>{_HEX64})(?=/|$)")),
)
# Monitors beside a container (podman's and CRI-O's conmon): host processes.
_MONITOR = re.compile(rf"(?:libpod|crio)-conmon-{_HEX64}")
# What a container's directory usually looks like: a path holding one of these
# and matching no layout is counted and logged (``unknown_layout``), not taken
# for the host without a word. Mount units (``…-<id>-rootfs.mount``) hold no container.
_LOOKS_LIKE = re.compile(rf"(?:^|[/_:-]){_HEX64}(?:\.scope)?(?=/|$)|/kubepods")
_MOUNT_UNIT = re.compile(r"\.mount(?:/|$)")


def match(path: str) -> Match | None:
    """The container a cgroup path belongs to; the innermost when containers
    nest (kind or docker-in-docker: a node container holding pods)."""
    if _MONITOR.search(path):
        return None
    best: tuple[int, Match] | None = None
    for layout, runtime, pattern in PATTERNS:
        for m in pattern.finditer(path):
            if best is None or m.start("id") > best[0]:
                ns = m.groupdict().get("ns") or ""
                best = (m.start("id"), Match(runtime, m.group("id"), layout, ns))
    return best[1] if best else None


def container_id(path: str) -> str | None:
    """The container id a cgroup path belongs to, or None for a host cgroup."""
    found = match(path)
    return found.container_id if found else None


def runtime_of(path: str) -> str | None:
    found = match(path)
    return found.runtime if found else None


def looks_like_container(path: str) -> bool:
    """A path no layout matches but that a runtime probably made (a full-length
    id, or something under kubepods): worth a warning, not silence."""
    if match(path) is not None or _MONITOR.search(path) or _MOUNT_UNIT.search(path):
        return False
    return bool(_LOOKS_LIKE.search(path))


def cgroup2_mount(mounts: str = "/proc/self/mounts") -> Path | None:
    """Where cgroup v2 is mounted (``/sys/fs/cgroup`` or ``/sys/fs/cgroup/unified``)."""
    try:
        with open(mounts) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return Path(parts[1])
    except OSError:
        return None
    return None


class CgroupPaths:
    """cgroup id → path relative to the v2 mount (``/kubepods.slice/…``)."""

    def __init__(self, mount: Path | None = None, max_entries: int = 65_536) -> None:
        self.mount = mount if mount is not None else cgroup2_mount()
        self.max_entries = max_entries
        self._paths: OrderedDict[int, str | None] = OrderedDict()
        self.walks = 0

    def learn(self, cgroup_id: int, path: str) -> None:
        self._remember(cgroup_id, path)

    def forget(self, cgroup_id: int) -> None:
        self._paths.pop(cgroup_id, None)

    def path(self, cgroup_id: int, pid: int = 0) -> str | None:
        if cgroup_id in self._paths:
            return self._paths[cgroup_id]
        found = self._from_proc(cgroup_id, pid) if pid else None
        if found is None:
            found = self._walk(cgroup_id)
        self._remember(cgroup_id, found)
        return found

    def _remember(self, cgroup_id: int, path: str | None) -> None:
        self._paths[cgroup_id] = path
        self._paths.move_to_end(cgroup_id)
        while len(self._paths) > self.max_entries:
            self._paths.popitem(last=False)

    def _abs(self, path: str) -> Path:
        assert self.mount is not None
        return self.mount / path.lstrip("/")

    def _from_proc(self, cgroup_id: int, pid: int) -> str | None:
        try:
            with open(f"/proc/{pid}/cgroup") as fh:
                for line in fh:
                    if line.startswith("0::"):
                        path = line[3:].strip()
                        return path if self.mount and os.stat(self._abs(path)).st_ino == cgroup_id else None
        except OSError:
            return None
        return None

    def _walk(self, cgroup_id: int) -> str | None:
        if self.mount is None:
            return None
        if cgroup_id == 1:
            return "/"
        self.walks += 1
        for dirpath, _dirs, _files in os.walk(self.mount):
            try:
                if os.stat(dirpath).st_ino == cgroup_id:
                    rel = os.path.relpath(dirpath, self.mount)
                    return "/" if rel == "." else "/" + rel
            except OSError:
                continue
        return None
