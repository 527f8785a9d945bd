"""Path generalisation: a table of real-looking paths and the glob a profile should hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.audit_report_writer.paths import generalise, is_library

EXAMPLES = [
    # /proc/<pid> and task ids
    ("/proc/1234/status", "/proc/*/status"),
    ("/proc/12/task/13/stat", "/proc/*/task/*/stat"),
    ("/proc/self/fd", "/proc/self/fd"),
    ("/proc/sys/kernel/ngroups_max", "/proc/sys/kernel/ngroups_max"),
    # numeric segments and long numbers inside a segment
    ("/dev/pts/0", "/dev/pts/*"),
    ("/var/log/app-20240101.log", "/var/log/app-*.log"),
    ("/run/user/1000/bus", "/run/user/*/bus"),
    # UUIDs (dashes or underscores)
    ("/var/lib/kubelet/pods/123e4567-e89b-12d3-a456-426614174000/volumes", "/var/lib/kubelet/pods/*/volumes"),
    (
        "/sys/fs/cgroup/kubepods.slice/kubepods-pod123e4567_e89b_12d3_a456_426614174000.slice/cpu.max",
        "/sys/fs/cgroup/kubepods.slice/kubepods-pod*.slice/cpu.max",
    ),
    # overlay / snapshot / container ids
    (
        "/var/lib/docker/overlay2/3f2a9c1b7d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4/merged/etc/hosts",
        "/var/lib/docker/overlay2/*/merged/etc/hosts",
    ),
    (
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/417/fs/bin/sh",
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/bin/sh",
    ),
    (
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/0a1b2c3d4e5f/rootfs",
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/*/rootfs",
    ),
    # random strings and temp names
    ("/tmp/tmpq8x_6zbl", "/tmp/tmp*"),
    ("/tmp/tmp.Q2xk8PzA1b", "/tmp/tmp*"),
    ("/home/app/.cache/k2j3h4g5/x", "/home/app/.cache/*/x"),
    ("/tmp/session-Q2xk8P.sock", "/tmp/session-*.sock"),
    # library directories -> **
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/**"),
    ("/lib64/ld-linux-x86-64.so.2", "/lib64/**"),
    ("/usr/lib/python3.11/os.py", "/usr/lib/python3.11/**"),
    ("/usr/local/lib/node_modules/npm/index.js", "/usr/local/lib/node_modules/**"),
    # left alone: ordinary names, versions, words with digits
    ("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt"),
    ("/usr/bin/python3.11", "/usr/bin/python3.11"),
    ("/usr/bin/sha256sum", "/usr/bin/sha256sum"),
    ("/etc/mysql/utf8mb4.cnf", "/etc/mysql/utf8mb4.cnf"),
    ("/etc/tmpfiles.d/x.conf", "/etc/tmpfiles.d/x.conf"),
    ("/etc/nginx/nginx.conf", "/etc/nginx/nginx.conf"),
    ("/", "/"),
    ("relative/123", "relative/123"),
]


@pytest.mark.parametrize(("path", "expected"), EXAMPLES, ids=[p for p, _ in EXAMPLES])
def test_generalise(path: str, expected: str) -> None:
    assert generalise(path) == expected


def test_library_paths_are_mapped() -> None:
    assert is_library("/usr/lib/x86_64-linux-gnu/libssl.so.3")
    assert not is_library("/usr/libexec/foo")
    assert not is_library("/etc/ld.so.cache")


_segment = st.text(alphabet="abcXYZ0123456789-._", min_size=1, max_size=20).filter(lambda s: s not in (".", ".."))


@given(st.lists(_segment, min_size=1, max_size=6))
def test_idempotent_and_absolute(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    once = generalise(path)
    assert once.startswith("/")
    assert generalise(once) == once
    assert once.count("/") == path.count("/") or once.endswith("/**")
