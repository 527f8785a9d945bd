"""Kernel proof: learn a real workload's syscalls, generate its seccomp profile, enforce it.

1. Learn. The workload (a shell pipeline: sh, cat, ls, wc, id) runs in a test
   cgroup under a seccomp filter whose default action is ``SCMP_ACT_LOG``: the
   kernel lets every syscall through and emits an AUDIT_SECCOMP record for
   each. The test registers itself as the audit daemon on the audit netlink
   socket, so it receives every record (the printk fallback is rate-limited
   and drops most of them). The workload's loginuid is set to a unique value
   so its records (and its children's) are told apart from anything else.
2. Generate. The syscalls become ``BehaviourAdded`` events, exactly what the
   learner emits, and go through the real generator (modeling -> seccomp),
   then the OCI validation.
3. Enforce. The same workload runs under the generated profile, loaded with
   libseccomp's Python bindings (Debian ``python3-seccomp``): it succeeds with
   the same output. A syscall outside the allow-list fails with EPERM, and a
   profile missing one learned syscall (``execve``) makes the workload fail.

The second test does the same with Vigil's own capture: the eBPF collector
(tests/kernel/conftest.py) reports the workload's syscall set per container on
the EVENTS stream, a modelling window (the audit-report-writer's pure fold)
turns it into a model, and the generated profile runs the workload.

AppArmor is not enabled on this kernel: its profile is validated as text
only (tests/unit/test_apparmor.py, ``apparmor_parser -Q -K``).
"""

from __future__ import annotations

import ctypes
import errno
import importlib.machinery
import importlib.util
import json
import os
import re
import select
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from contracts.profiles import BehaviourAdded
from services.audit_report_writer import modeling
from services.audit_report_writer import seccomp as generator
from tests.conftest import needs_root_reason

WORKLOAD = ["/bin/sh", "-c", "cat /etc/hostname; ls / | wc -l; id -u"]
CGROUP_ROOT = Path("/sys/fs/cgroup/unified")
DEBIAN_DIST = Path("/usr/lib/python3/dist-packages")

NETLINK_AUDIT = 9
AUDIT_SET = 1001
AUDIT_SECCOMP = 1326
AUDIT_STATUS_PID = 0x4
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2


def load_seccomp() -> ModuleType | None:
    """libseccomp's bindings: from the venv if installed, else Debian's python3-seccomp extension module."""
    try:
        import seccomp  # type: ignore[import-not-found]

        return seccomp  # type: ignore[no-any-return]
    except ImportError:
        pass
    for path in sorted(DEBIAN_DIST.glob("seccomp.cpython-*.so")):
        loader = importlib.machinery.ExtensionFileLoader("seccomp", str(path))
        spec = importlib.util.spec_from_file_location("seccomp", path, loader=loader)
        if spec is None:
            continue
        module = importlib.util.module_from_spec(spec)
        try:
            loader.exec_module(module)
        except ImportError:
            continue
        return module
    return None


SECCOMP = load_seccomp()


def skip_reason() -> str | None:
    reason = needs_root_reason()
    if reason:
        return reason
    if SECCOMP is None:
        return "libseccomp Python bindings missing (apt-get install python3-seccomp, or pip install pyseccomp)"
    if not (CGROUP_ROOT / "cgroup.procs").exists():
        return f"cgroup v2 not mounted at {CGROUP_ROOT}"
    return None


_SKIP = skip_reason()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]


# --- audit netlink listener -------------------------------------------------------------------


class AuditListener:
    """Registers as the audit daemon and collects AUDIT_SECCOMP records (a background reader)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        self.sock.bind((0, 0))
        self.records: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _set_pid(self, pid: int) -> None:
        status = struct.pack("=10I", AUDIT_STATUS_PID, 0, 0, pid, 0, 0, 0, 0, 0, 0)
        header = struct.pack("=IHHII", 16 + len(status), AUDIT_SET, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
        self.sock.sendto(header + status, (0, 0))

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            data = self.sock.recv(65536)
            while len(data) >= 16:
                length, kind, _flags, _seq, _pid = struct.unpack("=IHHII", data[:16])
                if kind == NLMSG_ERROR:
                    code = struct.unpack("=i", data[16:20])[0]
                    if code:
                        self.records.append(f"error {code}")
                elif kind == AUDIT_SECCOMP:
                    self.records.append(data[16:length].decode(errors="replace"))
                data = data[(length + 3) & ~3 :]

    def __enter__(self) -> AuditListener:
        self._thread.start()
        self._set_pid(os.getpid())
        return self

    def __exit__(self, *exc: object) -> None:
        self._set_pid(0)
        self._stop.set()
        self._thread.join()
        self.sock.close()


_RECORD = re.compile(r"auid=(?P<auid>\d+).*?exe=\"?(?P<exe>[^\" ]+)\"?.*?arch=(?P<arch>[0-9a-f]+) syscall=(?P<nr>\d+)")


def syscalls_of(records: list[str], auid: int) -> dict[str, set[str]]:
    """Syscall names per executable in the records of processes with loginuid ``auid``."""
    assert SECCOMP is not None
    out: dict[str, set[str]] = {}
    for rec in records:
        m = _RECORD.search(rec)
        if m is None or int(m["auid"]) != auid or m["arch"] != "c000003e":
            continue
        name = SECCOMP.resolve_syscall(SECCOMP.Arch.X86_64, int(m["nr"]))
        out.setdefault(m["exe"], set()).add(name.decode() if isinstance(name, bytes) else name)
    return out


# --- workload runs -------------------------------------------------------------------------


@pytest.fixture
def cgroup() -> Iterator[Path]:
    path = CGROUP_ROOT / f"vigil-models-test-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        path.rmdir()


def run(setup: Callable[[], None]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(WORKLOAD, preexec_fn=setup, capture_output=True, timeout=60, check=False)  # noqa: PLW1509


def learn(cgroup: Path) -> tuple[subprocess.CompletedProcess[bytes], dict[str, set[str]]]:
    assert SECCOMP is not None
    auid = 3_900_000_000 + os.getpid() % 100_000
    log_all = SECCOMP.SyscallFilter(SECCOMP.LOG)

    def setup() -> None:
        (cgroup / "cgroup.procs").write_text("0")
        Path("/proc/self/loginuid").write_text(str(auid))
        log_all.load()

    with AuditListener() as listener:
        result = run(setup)
        # records are queued before the process exits; give the reader a moment to drain the socket
        deadline = threading.Event()
        for _ in range(50):
            if syscalls_of(listener.records, auid).get("/usr/bin/id"):
                break
            deadline.wait(0.05)
    assert not [r for r in listener.records if r.startswith("error")], listener.records[:3]
    return result, syscalls_of(listener.records, auid)


def filter_from(profile: dict[str, Any], drop: frozenset[str] = frozenset()) -> Any:
    """An OCI LinuxSeccomp profile as a libseccomp filter (what runc/crun do, minus args)."""
    assert SECCOMP is not None
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    filt = SECCOMP.SyscallFilter(SECCOMP.ERRNO(profile.get("defaultErrnoRet", errno.EPERM)))
    for group in profile["syscalls"]:
        assert group["action"] == "SCMP_ACT_ALLOW"
        for name in group["names"]:
            if name not in drop:
                filt.add_rule(SECCOMP.ALLOW, name)
    return filt


def enforce(cgroup: Path, filt: Any) -> subprocess.CompletedProcess[bytes]:
    def setup() -> None:
        (cgroup / "cgroup.procs").write_text("0")
        filt.load()

    return run(setup)


def generate(per_exe: dict[str, set[str]]) -> dict[str, Any]:
    events = [
        BehaviourAdded(
            id=f"s{i}",
            time=i,
            image_name="workload",
            image_tag="test",
            event_type="syscalls",
            behaviour=name,
            executable=exe,
        )
        for i, (exe, name) in enumerate(sorted((e, n) for e, names in per_exe.items() for n in names))
    ]
    model = modeling.model_of_learned(events, "workload", "test")
    text = generator.render(model)
    generator.validate(text)
    return json.loads(text)  # type: ignore[no-any-return]


def syncfs_errno(filt: Any | None) -> int:
    """errno of ``syncfs(-1)`` in a child, optionally under ``filt`` (EBADF unfiltered, EPERM if denied)."""
    libc = ctypes.CDLL(None, use_errno=True)
    nr = 306  # x86_64 syncfs
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_end)
        if filt is not None:
            filt.load()
        libc.syscall(nr, -1)
        os.write(write_end, str(ctypes.get_errno()).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        value = pipe.read()
    os.waitpid(pid, 0)
    return int(value)


def test_generated_seccomp_profile_runs_the_workload_and_denies_the_rest(cgroup: Path) -> None:
    plain = run(lambda: None)
    assert plain.returncode == 0

    learned_run, per_exe = learn(cgroup)
    assert learned_run.returncode == 0 and learned_run.stdout == plain.stdout
    assert {"/usr/bin/cat", "/usr/bin/ls", "/usr/bin/id"} <= set(per_exe), sorted(per_exe)
    learned = set().union(*per_exe.values())
    assert {"execve", "openat", "read", "write", "exit_group"} <= learned

    profile = generate(per_exe)
    allowed = {name for group in profile["syscalls"] for name in group["names"]}
    assert allowed == learned and "syncfs" not in allowed

    enforced = enforce(cgroup, filter_from(profile))
    assert enforced.returncode == 0, enforced.stderr
    assert enforced.stdout == plain.stdout

    assert syncfs_errno(None) == errno.EBADF
    assert syncfs_errno(filter_from(profile)) == errno.EPERM

    with pytest.raises(PermissionError):
        enforce(cgroup, filter_from(profile, drop=frozenset({"execve"})))


# --- the same proof with the collector's syscall sets (the path Vigil uses in production) ------------


def test_collector_learned_profile_runs_the_workload(kernel_env: Any) -> None:
    """Learn with the eBPF collector (EVENTS stream), model through a window, enforce the profile."""
    from contracts.events import ClockTicked, SyscallsObserved
    from contracts.models import StartModeling
    from tests.kernel.conftest import container_cgroup

    image = "vigil-test/models"
    with container_cgroup(kernel_env, image) as ctr:

        def join() -> None:
            (ctr.cgroup / "cgroup.procs").write_text("0")

        learned_run = subprocess.run(WORKLOAD, preexec_fn=join, capture_output=True, timeout=60, close_fds=False)  # noqa: PLW1509
        assert learned_run.returncode == 0

        def mine(e: Any) -> bool:
            return isinstance(e, SyscallsObserved) and e.container.id == ctr.id

        # the collector reports each syscall once per container (processes exit before their bitmap is
        # drained, so the events name no executable): wait for what the pipeline certainly does
        wanted = {"execve", "pipe2", "wait4", "getdents64", "exit_group"}
        kernel_env.wait_events(lambda es: wanted <= {n for e in es for n in e.syscalls}, mine)
        threading.Event().wait(1.0)  # a few more syscall-bitmap drains (0.2 s each) for the last processes
        events = sorted(kernel_env.events(mine), key=lambda e: e.time)

        state = modeling.Windows()
        modeling.request(state, StartModeling(id="k", time=events[0].time, image_name=image, duration=3600 * 10**9))
        closed = [
            c for e in [*events, ClockTicked(time=events[0].time + 3600 * 10**9)] for c in modeling.advance(state, e)
        ]
        assert len(closed) == 1 and closed[0].model is not None
        text = generator.render(closed[0].model)
        generator.validate(text)
        profile = json.loads(text)
        allowed = {n for g in profile["syscalls"] for n in g["names"]}
        assert {"execve", "openat", "getdents64", "exit_group"} <= allowed and "syncfs" not in allowed

        filt = filter_from(profile)

        def join_and_filter() -> None:
            join()
            filt.load()

        enforced = subprocess.run(
            WORKLOAD,
            preexec_fn=join_and_filter,
            capture_output=True,
            timeout=60,
            close_fds=False,  # noqa: PLW1509
        )
    assert enforced.returncode == 0, enforced.stderr
    assert enforced.stdout == learned_run.stdout
    assert syncfs_errno(filt) == errno.EPERM
