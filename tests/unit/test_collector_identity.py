"""cgroup path → container id, table-driven over the runtimes' naming schemes."""

from __future__ import annotations

import pytest

from collector.identity import container_id, runtime_of

H = "0123456789abcdef" * 4
H2 = "fedcba9876543210" * 4

CASES = [
    # containerd (systemd cgroup driver, kubepods slices)
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-{H}.scope",
        H,
        "containerd",
    ),
    (f"/kubepods.slice/kubepods-pod9.slice/cri-containerd-{H}.scope/init", H, "containerd"),
    # CRI-O; its conmon scope is the monitor, not the container
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podab_cd.slice/crio-{H}.scope", H, "cri-o"),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podab_cd.slice/crio-conmon-{H}.scope", None, None),
    # docker: systemd driver and cgroupfs driver
    (f"/system.slice/docker-{H}.scope", H, "docker"),
    (f"/docker/{H}", H, "docker"),
    # podman
    (f"/machine.slice/libpod-{H}.scope/container", H, "podman"),
    # kubepods with the cgroupfs driver
    (f"/kubepods/burstable/pod0b1c2d3e-aaaa-bbbb-cccc-0123456789ab/{H2}", H2, "kubepods"),
    (f"/kubepods/pod0b1c2d3e-aaaa-bbbb-cccc-0123456789ab/{H2}", H2, "kubepods"),
    # host cgroups
    ("/", None, None),
    ("/system.slice/ssh.service", None, None),
    ("/user.slice/user-0.slice/session-1.scope", None, None),
    ("/kubepods.slice/kubepods-burstable.slice", None, None),
    (f"/system.slice/docker-{H[:12]}.scope", None, None),  # short id: not a container scope
]


@pytest.mark.parametrize(("path", "cid", "runtime"), CASES)
def test_container_id_from_cgroup_path(path: str, cid: str | None, runtime: str | None) -> None:
    assert container_id(path) == cid
    if cid is not None:
        assert runtime_of(path) == runtime
