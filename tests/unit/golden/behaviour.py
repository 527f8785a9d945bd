"""Behaviour the golden files are generated from (constructed by hand, shaped like the seed).

``seed_behaviour`` mirrors vArmor's demo-4 (debian:10): ``cat /etc/shadow``,
``unshare -Un id``, ``echo … > /root/c1``, ``sleep infinity``, as the learner
would emit it (BehaviourAdded, one per new behaviour). ``replica_events``
are raw events of three containers of one image, one of them opted out.
"""

from __future__ import annotations

from contracts.events import (
    ClockTicked,
    ConnectObserved,
    Container,
    DnsQueried,
    DnsQuery,
    ExecObserved,
    FileAccess,
    FileOpened,
    NetConnect,
    Process,
    RawEvent,
    SyscallsObserved,
)
from contracts.profiles import BehaviourAdded

SEC = 1_000_000_000
T0 = 1_767_225_600 * SEC  # 2026-01-01T00:00:00Z

SEED_SYSCALLS = (
    "open openat openat2 close read write fcntl epoll_ctl fstatfs getdents64 chdir capget prctl mmap newfstatat "
    "fstat futex setgroups setgid setuid getcwd rt_sigreturn capset getppid faccessat2 getpid execve brk arch_prctl "
    "access pread64 mprotect set_tid_address set_robust_list rseq prlimit64 munmap getuid getgid rt_sigaction "
    "geteuid getrandom getegid rt_sigprocmask vfork wait4 pause fadvise64 exit_group ioctl sysinfo uname socket "
    "connect lseek getpgrp getpeername unshare statfs getgroups dup2"
).split()


def _added(i: int, event_type: str, behaviour: str, **kw: object) -> BehaviourAdded:
    return BehaviourAdded(
        id=f"b{i}",
        time=T0 + i * SEC,
        image_name="debian",
        image_tag="10",
        event_type=event_type,  # type: ignore[arg-type]
        behaviour=behaviour,
        **kw,  # type: ignore[arg-type]
    )


def seed_behaviour() -> list[BehaviourAdded]:
    shell = "/usr/bin/bash"
    raw: list[tuple[str, str, dict[str, object]]] = [
        ("exec", "/usr/bin/sleep", {"lineage": ["/usr/bin/containerd-shim-runc-v2", "/bin/sh", "/usr/bin/sleep"]}),
        (
            "exec",
            "/usr/bin/id",
            {"lineage": ["/usr/bin/containerd-shim-runc-v2", shell, "/usr/bin/unshare", "/usr/bin/id"]},
        ),
        ("exec", "/usr/bin/unshare", {"lineage": ["/usr/bin/containerd-shim-runc-v2", shell, "/usr/bin/unshare"]}),
        ("open", "/dev/tty", {"access": "rw", "executable": shell}),
        ("open", "/etc/group", {"access": "r", "executable": "/usr/bin/id"}),
        ("open", "/etc/ld.so.cache", {"access": "r", "executable": "/usr/bin/id"}),
        ("open", "/etc/nsswitch.conf", {"access": "r", "executable": "/usr/bin/id"}),
        ("open", "/etc/passwd", {"access": "r", "executable": "/usr/bin/id"}),
        ("open", "/etc/shadow", {"access": "r", "executable": "/usr/bin/cat"}),
        ("open", "/proc/filesystems", {"access": "r", "executable": "/usr/bin/id"}),
        ("open", "/proc/sys/kernel/ngroups_max", {"access": "r", "executable": "/usr/bin/id"}),
        ("open", "/proc/4242/status", {"access": "r", "executable": "/usr/bin/id"}),
        ("open", "/root/c1", {"access": "wa", "executable": shell}),
        ("open", "/root/c1", {"access": "r", "executable": "/usr/bin/cat"}),
        ("open", "/usr/lib/x86_64-linux-gnu/libc.so.6", {"access": "rx", "executable": "/usr/bin/id"}),
        ("open", "/usr/lib/x86_64-linux-gnu/libselinux.so.1", {"access": "r", "executable": "/usr/bin/id"}),
        ("open", "/tmp/tmp.Q2xk8PzA1b", {"access": "w", "executable": shell}),
        ("connect", "tcp:10.0.0.0/8:443", {"executable": shell}),
        ("dns", "example.com", {"executable": shell}),
    ]
    raw += [("syscalls", name, {"executable": "/usr/bin/id"}) for name in SEED_SYSCALLS]
    events = [_added(i, et, b, **kw) for i, (et, b, kw) in enumerate(raw)]
    other_tag = BehaviourAdded(
        id="other", time=T0, image_name="debian", image_tag="11", event_type="exec", behaviour="/usr/bin/wget"
    )
    return [*events, other_tag]


def _container(name: str, cid: str, image_tag: str = "1.25") -> Container:
    return Container(id=cid, image_name="nginx", image_tag=image_tag, pod=f"web-{cid}", namespace="default", name=name)


def _proc(path: str, pid: int = 100) -> Process:
    return Process(
        pid=pid, ppid=1, path=path, comm=path.rsplit("/", 1)[-1], ancestors=["/usr/bin/containerd-shim-runc-v2"]
    )


def replica_events(start: int) -> list[RawEvent]:
    """Two replicas (web@a, web@b) + a sidecar (proxy@c) of nginx:1.25, and one nginx:1.24 container."""
    a, b, c = _container("web", "a"), _container("web", "b"), _container("proxy", "c")
    old = _container("web", "z", image_tag="1.24")
    nginx = "/usr/sbin/nginx"
    common_sys = ["read", "write", "openat", "close", "epoll_wait", "accept4"]
    events: list[RawEvent] = []
    for i, ctr in enumerate((a, b)):
        t = start + (i + 1) * SEC
        events += [
            ExecObserved(time=t, container=ctr, process=_proc(nginx)),
            FileOpened(
                time=t, container=ctr, process=_proc(nginx), file=FileAccess(path="/etc/nginx/nginx.conf", flags=0)
            ),
            FileOpened(
                time=t,
                container=ctr,
                process=_proc(nginx),
                file=FileAccess(path="/var/log/nginx/access.log", flags=0o2001),
            ),
            FileOpened(
                time=t,
                container=ctr,
                process=_proc(nginx),
                file=FileAccess(path="/usr/lib/x86_64-linux-gnu/libssl.so.3", flags=0),
            ),
            SyscallsObserved(time=t, container=ctr, process=_proc(nginx), syscalls=common_sys),
        ]
    tb = start + 3 * SEC
    events += [
        # only replica b: a debugging shell, a temp file, an upstream connection, a DNS lookup
        ExecObserved(time=tb, container=b, process=_proc("/bin/sh", 200)),
        FileOpened(
            time=tb, container=b, process=_proc("/bin/sh", 200), file=FileAccess(path="/tmp/tmpq8x_6zbl", flags=0o2)
        ),
        FileOpened(time=tb, container=b, process=_proc(nginx), file=FileAccess(path="/proc/200/status", flags=0)),
        ConnectObserved(time=tb, container=b, process=_proc(nginx), net=NetConnect(addr="10.1.2.3", port=8080)),
        DnsQueried(time=tb, container=b, process=_proc(nginx), dns=DnsQuery(name="backend.default.svc")),
        SyscallsObserved(time=tb, container=b, process=_proc("/bin/sh", 200), syscalls=["wait4", "clone", "execve"]),
        # the opted-out sidecar and another tag: never modelled
        ExecObserved(time=tb, container=c, process=_proc("/usr/bin/envoy", 300)),
        SyscallsObserved(time=tb, container=c, process=_proc("/usr/bin/envoy", 300), syscalls=["ptrace"]),
        ExecObserved(time=tb, container=old, process=_proc("/usr/bin/curl", 400)),
        ClockTicked(time=start + 5 * SEC),
    ]
    return events
