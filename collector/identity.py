"""Container identity: cgroup id → cgroup path → container id.

Invariants:
- :func:`container_id` is pure and table-driven (:data:`PATTERNS`); a path no
  runtime pattern matches is a host path (``None``);
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

_HEX64 = "[0-9a-f]{64}"

# (runtime, regex on the cgroup path; group 1 is the container id). First match wins.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("containerd", re.compile(rf"cri-containerd-({_HEX64})\.scope(?:/|$)")),
    ("cri-o", re.compile(rf"crio-({_HEX64})\.scope(?:/|$)")),
    ("docker", re.compile(rf"docker-({_HEX64})\.scope(?:/|$)")),
    ("podman", re.compile(rf"libpod-({_HEX64})\.scope(?:/|$)")),
    ("docker", re.compile(rf"/docker/({_HEX64})(?:/|$)")),
    ("kubepods", re.compile(rf"/kubepods(?:/[a-z]+)?/pod[0-9a-f_-]+/({_HEX64})(?:/|$)")),
    ("containerd", re.compile(rf"/[^/]+/({_HEX64})$")),  # cgroupfs driver, namespace/<id>
)
_CONMON = re.compile(r"crio-conmon-")


def container_id(path: str) -> str | None:
    """The container id a cgroup path belongs to, or None for a host cgroup."""
    if _CONMON.search(path):
        return None  # CRI-O's monitor process, not the container
    for _, pattern in PATTERNS:
        if m := pattern.search(path):
            return m.group(1)
    return None


def runtime_of(path: str) -> str | None:
    for runtime, pattern in PATTERNS:
        if pattern.search(path):
            return runtime
    return None


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
