"""Records → contracts: identity (known, unknown, host), lineage, syscall sets."""

from __future__ import annotations

from pathlib import Path

from collector import abi
from collector.enrich import Enricher
from collector.identity import CgroupPaths
from collector.workloads import Registry, parse_file
from contracts import workloads as wl
from contracts.events import (
    ConnectObserved,
    ContainerStarted,
    ContainerStopped,
    ExecObserved,
    FileOpened,
    SyscallsObserved,
)

CID = "ab" * 32
CG = 4242


def make(tmp_path: Path, host: str = "ignore", register: bool = True) -> tuple[Enricher, Registry]:
    mount = tmp_path / "cg"
    scope = mount / "kubepods.slice" / f"cri-containerd-{CID}.scope"
    scope.mkdir(parents=True)
    paths = CgroupPaths(mount)
    paths.learn(CG, f"/kubepods.slice/cri-containerd-{CID}.scope")
    paths.learn(1, "/")
    reg = Registry()
    if register:
        reg.apply(CID, wl.encode(wl.Workload(container_id=CID, image_name="nginx", image_tag="1.25", pod="web-0")))
    return Enricher(node="n1", paths=paths, workloads=reg, host_processes=host, clock_offset_ns=1_000), reg  # type: ignore[arg-type]


def h(cg: int = CG, pid: int = 900_001, comm: str = "sh") -> abi.Header:
    return abi.Header(ts=5, cgroup_id=cg, pid=pid, tid=pid, uid=0, comm=comm)


def test_exec_carries_workload_lineage_and_event_time(tmp_path: Path) -> None:
    e, _ = make(tmp_path)
    e.handle(abi.Exec(h(pid=900_001), 900_000, "/bin/sh", ["sh"]))
    [ev] = e.handle(abi.Exec(h(pid=900_002, comm="curl"), 900_001, "/usr/bin/curl", ["curl", "x"]))
    assert isinstance(ev, ExecObserved)
    assert ev.time == 1_005 and ev.node == "n1"
    assert (ev.container.id, ev.container.image_name, ev.container.image_tag, ev.container.pod) == (
        CID,
        "nginx",
        "1.25",
        "web-0",
    )
    assert ev.process.ancestors == ["/bin/sh"] and ev.process.argv == ["curl", "x"]
    [op] = e.handle(abi.Open(h(pid=900_002), 0, "/etc/hosts"))
    assert isinstance(op, FileOpened) and op.process.path == "/usr/bin/curl"


def test_unknown_container_keeps_its_id_and_resolves_when_registered(tmp_path: Path) -> None:
    e, reg = make(tmp_path, register=False)
    [ev] = e.handle(abi.Open(h(), 0, "/a"))
    assert (ev.container.id, ev.container.image_name) == (CID, "")
    reg.apply(CID, wl.encode(wl.Workload(container_id=CID, image_name="redis")))
    [ev] = e.handle(abi.Open(h(), 0, "/a"))
    assert ev.container.image_name == "redis"
    reg.apply(wl.key(CID), None)
    [ev] = e.handle(abi.Open(h(), 0, "/a"))
    assert ev.container.image_name == ""


def test_host_processes_ignored_or_tagged(tmp_path: Path) -> None:
    ignore, _ = make(tmp_path / "a")
    assert ignore.handle(abi.Open(h(cg=1), 0, "/a")) == []
    assert ignore.stats.host_dropped == 1
    tag, _ = make(tmp_path / "b", host="tag")
    [ev] = tag.handle(abi.Connect(h(cg=1), 2, 80, bytes([10, 0, 0, 1]) + b"\0" * 12))
    assert isinstance(ev, ConnectObserved) and ev.container.id == "host"
    assert (ev.net.addr, ev.net.port, ev.net.family) == ("10.0.0.1", 80, "inet")


def test_container_start_stop_from_cgroup_records(tmp_path: Path) -> None:
    e, _ = make(tmp_path)
    new = "cd" * 32
    (tmp_path / "cg" / f"docker-{new}.scope").mkdir()
    ino = (tmp_path / "cg" / f"docker-{new}.scope").stat().st_ino
    [start] = e.handle(abi.CgroupChange(h(cg=1), True, ino, 0, 1, f"/docker-{new}.scope"))
    assert isinstance(start, ContainerStarted) and start.container.id == new
    assert e.handle(abi.CgroupChange(h(cg=1), True, ino + 1, 3, 1, f"/docker-{new}.scope")) == []  # v1 hierarchy
    [stop] = e.handle(abi.CgroupChange(h(cg=1), False, ino, 0, 1, f"/docker-{new}.scope"))
    assert isinstance(stop, ContainerStopped) and stop.container.id == new


def test_syscalls_reported_once_per_container(tmp_path: Path) -> None:
    e, _ = make(tmp_path)
    [first] = e.syscalls(CG, 900_001, [0, 1, 59], now_ns=7)
    assert isinstance(first, SyscallsObserved) and first.syscalls == ["execve", "read", "write"]
    [second] = e.syscalls(CG, 900_002, [0, 435, 439], now_ns=8)
    assert second.syscalls == ["clone3", "faccessat2"]
    assert e.syscalls(CG, 900_003, [1, 59], now_ns=9) == []


def test_workloads_file_parses_images_and_names_bad_entries() -> None:
    [a, b] = parse_file(
        "workloads:\n- {container_id: c1, image: 'reg:5000/team/app:2.0', pod: p, namespace: ns}\n"
        "- {container_id: c2, image_name: redis, image_tag: '7'}\n"
    )
    assert (a.image_name, a.image_tag, a.pod, a.namespace, a.source) == ("reg:5000/team/app", "2.0", "p", "ns", "file")
    assert (b.image_name, b.image_tag) == ("redis", "7")
    try:
        parse_file("workloads:\n- {image: x}\n", "w.yaml")
    except ValueError as exc:
        assert "entry 0" in str(exc) and "w.yaml" in str(exc)
    else:
        raise AssertionError("an entry without container_id must be refused")
