"""The self-test's workload: a fresh interpreter that opens a file, writes one and
resolves a name, and the raw events that activity is, for the trace path (the
same contracts the kernel collector emits)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from contracts.events import (
    Container,
    ContainerStarted,
    ContainerStopped,
    DnsQueried,
    DnsQuery,
    ExecObserved,
    FileAccess,
    FileOpened,
    Process,
    RawEvent,
)
from services.runtime.settings import Settings

SELF_TEST_IMAGE = "vigil-self-test"

_WORKLOAD = """
import socket, sys
src, dst, name = sys.argv[1:4]
with open(src) as f, open(dst, "w") as g:
    g.write(f.read())
try:
    socket.getaddrinfo(name, 53)
except OSError:
    pass
"""


@dataclass
class Workload:
    ran: bool
    detail: str
    pid: int = 0
    ppid: int = 0
    argv: list[str] = field(default_factory=list)
    src: str = ""
    dst: str = ""
    dns: str = ""
    started_ns: int = 0
    ended_ns: int = 0


def run_workload(tmp: Path, nonce: str) -> Workload:
    """Run the test workload: exec a fresh interpreter that opens a file, writes one and resolves a name."""
    src, dst = tmp / "input.txt", tmp / "output.txt"
    src.write_text(f"vigil self test {nonce}\n")
    dns = f"self-test-{nonce.split('-')[-1]}.vigil.invalid"
    argv = [sys.executable, "-c", _WORKLOAD, str(src), str(dst), dns]
    started = time.time_ns()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        return Workload(False, "the test workload did not finish within 15s")
    ended = time.time_ns()
    ok = proc.returncode == 0 and dst.exists()
    detail = f"exec {Path(sys.executable).name}, open {src.name}, write {dst.name}, DNS {dns}"
    if not ok:
        detail = f"exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}"
    return Workload(
        ok,
        detail,
        pid=0,
        ppid=os.getpid(),
        argv=argv[:2] + ["…", *argv[3:]],
        src=str(src),
        dst=str(dst),
        dns=dns,
        started_ns=started,
        ended_ns=ended,
    )


def trace_events(workload: Workload, settings: Settings, nonce: str) -> list[RawEvent]:
    """The workload's activity as the raw events the kernel collector would publish,
    in a container of its own (image ``vigil-self-test``) that starts and stops."""

    node = settings.node_name
    t0, t1 = workload.started_ns, max(workload.ended_ns, workload.started_ns + 5)
    container = Container(
        id=f"self-test-{nonce}", image_name=SELF_TEST_IMAGE, image_tag="self-test", name="vigil-self-test"
    )
    proc = Process(
        pid=os.getpid(),
        ppid=workload.ppid,
        comm="python",
        path=sys.executable,
        argv=workload.argv,
        ancestors=["vigil self-test"],
    )
    return [
        ContainerStarted(time=t0, node=node, container=container),
        ExecObserved(time=t0 + 1, node=node, container=container, process=proc),
        FileOpened(
            time=t0 + 2, node=node, container=container, process=proc, file=FileAccess(path=workload.src, flags=0)
        ),
        FileOpened(
            time=t0 + 3,
            node=node,
            container=container,
            process=proc,
            file=FileAccess(path=workload.dst, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ),
        DnsQueried(time=t0 + 4, node=node, container=container, process=proc, dns=DnsQuery(name=workload.dns)),
        ContainerStopped(time=t1, node=node, container=container),
    ]
