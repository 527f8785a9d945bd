"""Collector benchmark: what tracing costs the traced workload, and how fast
user space drains the ring buffer.

1. Overhead: an openat loop (100 paths, round robin) and a fork+exec loop
   (/bin/true), each run in a containerd-named test cgroup with nothing
   attached, with the full Vigil collector (eBPF → decode → identity → NATS)
   with dedup on and off, and with BCC's own opensnoop / execsnoop. Median
   wall time of several runs; ratios against the bare loop.
2. Drain: an openat loop over unique paths (every event a dedup miss) paced
   at ~100k events/s; the loaded program with a user-space consumer that
   decodes and enriches every record on a 10 ms timer. Reports kernel drops
   and the consumer's decode rate (records per second of consumer CPU).

3. Breakdown (``--breakdown``): the openat loop only, with the kernel
   programs loaded directly (no NATS; a thread drains the ring buffer):
   an empty program on the raw ``sys_enter`` tracepoint (the fixed cost of
   the tracing slow path every syscall then takes), then the collector's
   program with only open tracing (dedup on / off), with syscall sets only,
   and everything on. All loaded once and attached one at a time, run by
   run, interleaved (load on the machine drifts; this spreads it evenly).
   ``--baseline FILE`` adds the same rows for another version of
   bpf/collector.c (e.g. ``git show REV:bpf/collector.c > old.c``), so a
   change is measured before/after in one run.

4. Workload (``--workload``; also in the full run when podman is installed):
   a realistic workload in a real container. One podman (runc) container of
   the image infra/host/demo-image.sh builds, on one CPU, runs busybox
   ``httpd``; one long ``podman exec`` in it runs ``wget`` requests for its
   files in chunks (each request a fork+exec, a connect, an accept and fork
   in httpd, file opens). Per chunk: the container cgroup's CPU time
   (cpuacct.usage) and the chunk's wall time. With nothing attached, an
   empty program on raw ``sys_enter`` (the floor) and the full Vigil
   collector (dedup on; its user space on the other CPU), interleaved chunk
   by chunk, with the openat+close loop of 1. after each chunk under the
   same setup; rounds when the machine was not quiet are left out. Then the
   collector's user-space CPU and its programs' run time per request. Ends
   with a summary: medians, (with − without) / without.

Needs root, BCC and a C compiler (and podman with runc for 4.).
`python -m bench.collector [--quick] [--breakdown [--baseline OLD.c] | --workload]`.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import functools
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

OPEN_LOOP = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
/* openloop DIR N UNIQUE RATE: N opens; UNIQUE=0 cycles 100 paths, 1 uses a new
   (missing) path each time; RATE>0 paces to RATE opens/s. */
int main(int argc, char **argv) {
    const char *dir = argv[1];
    long n = atol(argv[2]), unique = atol(argv[3]), rate = atol(argv[4]);
    char path[256];
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%ld", dir, unique ? i : i % 100);
        int fd = open(path, O_RDONLY);
        if (fd >= 0) close(fd);
        if (rate > 0 && (i & 255) == 0) {
            for (;;) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                double el = (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
                if (el * rate >= i) break;
            }
        }
    }
    return 0;
}
"""

FORK_LOOP = r"""
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) { execl("/bin/true", "true", (char *)0); _exit(127); }
        int st; waitpid(p, &st, 0);
    }
    return 0;
}
"""


def compile_loops(tmp: Path) -> tuple[Path, Path]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("bench.collector needs a C compiler (cc) for the measured loops")
    out = []
    for name, src in (("openloop", OPEN_LOOP), ("forkloop", FORK_LOOP)):
        (tmp / f"{name}.c").write_text(src)
        subprocess.run([cc, "-O2", "-o", str(tmp / name), str(tmp / f"{name}.c")], check=True)
        out.append(tmp / name)
    return out[0], out[1]


@contextmanager
def cgroup() -> Iterator[Path]:
    from collector.identity import cgroup2_mount

    mount = cgroup2_mount()
    assert mount is not None, "no cgroup v2 mount"
    path = mount / "vigil-bench.slice" / f"cri-containerd-{secrets.token_hex(32)}.scope"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        for _ in range(50):
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def timed(cg: Path, argv: list[str], cpu: bool = True) -> float:
    """CPU seconds (user + system, children included) the loop spent, or wall
    seconds. CPU time is what tracing costs the workload (BPF programs run in
    its syscalls) and is far less sensitive to other load on the machine."""
    cmd = ["/bin/sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh", *argv]
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # microseconds, unlike os.times()' clock ticks
    subprocess.run(cmd, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not cpu:
        return time.perf_counter() - t
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_time(cg: Path, argv: list[str], runs: int) -> float:
    timed(cg, argv)  # warm caches
    return statistics.median(timed(cg, argv) for _ in range(runs))


# --- what is attached during a measurement ---------------------------------------------------


@contextmanager
def nothing() -> Iterator[None]:
    yield


@contextmanager
def vigil(dedup: bool) -> Iterator[Any]:
    """The whole collector (embedded nats-server, eBPF, decode, identity,
    publish) in a thread; yields the Collector (its ``probe`` is loaded)."""
    from collector.main import Collector
    from services.runtime import embedded
    from tests.support import make_settings

    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    server = embedded.start(tmp / "nats", port=-1)
    settings = make_settings(
        tmp / "data",
        server.url,
        COLLECTOR_SOURCE="ebpf",
        COLLECTOR_DEDUP=str(dedup).lower(),
        COLLECTOR_HOST_PROCESSES="ignore",
    )
    col = Collector(settings)
    th = threading.Thread(target=lambda: asyncio.run(col.run()), daemon=True)
    th.start()
    if not col.ready.wait(60):
        raise SystemExit("collector did not attach")
    try:
        yield col
    finally:
        col.stop()
        th.join(30)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# BCC's own tools, and the tracepoint equivalent for when a tool cannot load
# here (opensnoop wants fentry, refused with EPERM; execsnoop wants kprobes,
# absent): `trace` from bpfcc-tools printing every event, as the tools do.
BCC_FALLBACK = {
    "opensnoop": 't:syscalls:sys_enter_openat "%s", args->filename',
    "execsnoop": 't:sched:sched_process_exec "%d", args->pid',
}


def _bcc_start(argv: list[str]) -> subprocess.Popen[bytes] | None:
    from collector import headers

    env = {**os.environ, **headers.environment(headers.find(extract=True))}  # the tree the collector takes
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    header = proc.stdout.readline()  # the column header: attached
    if not header.lstrip().startswith(b"PID") and not header.lstrip().startswith(b"TIME"):
        proc.kill()
        proc.wait()
        return None
    return proc


@contextmanager
def bcc_tool(name: str, label: list[str]) -> Iterator[None]:
    """Run BCC's `name` (or its `trace` equivalent); label[0] says which ran."""
    tool = shutil.which(f"{name}-bpfcc") or f"/usr/sbin/{name}-bpfcc"
    proc = _bcc_start([tool])
    label[0] = f"bcc {name}"
    if proc is None:
        trace = shutil.which("trace-bpfcc") or "/usr/sbin/trace-bpfcc"
        proc = _bcc_start([trace, BCC_FALLBACK[name]])
        label[0] = f"bcc trace (no {name})"
    if proc is None:
        raise SystemExit(f"neither {name}-bpfcc nor trace-bpfcc could attach")

    def drain() -> None:
        assert proc is not None and proc.stdout is not None
        for _ in iter(lambda: proc.stdout.read(65536), b""):  # type: ignore[union-attr]
            pass

    threading.Thread(target=drain, daemon=True).start()
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)


EMPTY_SYS_ENTER = "RAW_TRACEPOINT_PROBE(sys_enter) { return 0; }"


class Switchable:
    """A loaded BPF object whose tracepoints can be detached and attached again,
    so several programs are compared run by run, interleaved: load drifts
    (other work on the machine) then hit every variant alike."""

    def __init__(self, bpf: Any) -> None:
        self.bpf = bpf
        self.tps = list(bpf.tracepoint_fds)
        self.raw = list(bpf.raw_tracepoint_fds)

    def detach(self) -> None:
        for tp in self.tps:
            self.bpf.detach_tracepoint(tp)
        for tp in self.raw:
            self.bpf.detach_raw_tracepoint(tp)

    def attach(self) -> None:
        for tp in self.tps:
            self.bpf.attach_tracepoint(tp=tp, fn_name=b"tracepoint__" + tp.replace(b":", b"__"))
        for tp in self.raw:
            self.bpf.attach_raw_tracepoint(tp=tp, fn_name=b"raw_tracepoint__" + tp)


ONLY = {"exec": False, "open": False, "connect": False, "dns": False, "syscalls": False}


def breakdown(openloop: Path, quick: bool, baseline: Path | None = None) -> None:
    """Every variant loaded once, detached; each round attaches them one at a
    time for one run of the loop (a drain thread empties their ring buffers)."""
    from bcc import BPF

    from collector.ebpf import BPF_SOURCE, Probe, ProbeOptions, _prepare_environment

    n, rounds = (300_000, 5) if quick else (1_000_000, 9)
    data = Path(tempfile.mkdtemp(prefix="vigil-bench-files-"))
    for i in range(100):
        (data / f"f{i}").write_text("x")
    argv = [str(openloop), str(data), str(n), "0", "0"]
    variants: list[tuple[str, dict[str, Any]]] = [
        ("open only, dedup on", {**ONLY, "open": True}),
        ("open only, dedup off", {**ONLY, "open": True, "dedup": False}),
        ("syscall sets only", {**ONLY, "syscalls": True}),
        ("all but syscall sets", {"syscalls": False}),
        ("all, dedup on", {}),
        ("all, dedup off", {"dedup": False}),
    ]
    _prepare_environment()
    probes: list[Probe] = []
    setups: list[tuple[str, Switchable | None]] = [("bare", None)]
    setups.append(("empty raw sys_enter prog", Switchable(BPF(text=EMPTY_SYS_ENTER.encode()))))
    for label, opts in variants:
        for tag, source in ((" [baseline]", baseline), ("", BPF_SOURCE)):
            if source is None:
                continue
            probe = Probe(ProbeOptions(ring_bytes=4 << 20, **opts), source)
            probes.append(probe)
            setups.append((label + tag, Switchable(probe.bpf)))
    for _, sw in setups:
        if sw is not None:
            sw.detach()
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            time.sleep(0.01)
            for probe in probes:
                probe.consume()

    th = threading.Thread(target=drain, daemon=True)
    th.start()
    results: dict[str, list[float]] = {label: [] for label, _ in setups}
    try:
        with cgroup() as cg:
            timed(cg, argv)  # warm caches
            for _ in range(rounds):
                for label, sw in setups:
                    if sw is not None:
                        sw.attach()
                    try:
                        results[label].append(timed(cg, argv))
                    finally:
                        if sw is not None:
                            sw.detach()
    finally:
        stop.set()
        th.join()
        for probe in probes:
            probe.close()
        shutil.rmtree(data, ignore_errors=True)
    print(f"breakdown: openat+close loop, CPU time (median of {rounds} interleaved runs of {n:,})")
    base = statistics.median(results["bare"])
    for label, runs in results.items():
        secs = statistics.median(runs)
        print(
            f"  {label:<37} {secs:8.3f} s  {secs / n * 1e9:7.0f} ns/op  {(secs - base) / n * 1e9:+6.0f} ns"
            f"  ({(secs / base - 1) * 100:+.1f}%)"
        )


def overhead(openloop: Path, forkloop: Path, quick: bool) -> None:
    n_open, n_fork, runs = (300_000, 1_000, 5) if quick else (1_000_000, 4_000, 7)
    data = Path(tempfile.mkdtemp(prefix="vigil-bench-files-"))
    for i in range(100):
        (data / f"f{i}").write_text("x")
    loops = {
        "openat": ([str(openloop), str(data), str(n_open), "0", "0"], n_open, "opensnoop"),
        "fork+exec": ([str(forkloop), str(n_fork)], n_fork, "execsnoop"),
    }
    print(f"overhead: CPU time of the loop (user+sys, median of {runs} runs, in a containerd-named cgroup)")
    for loop, (argv, n, tool) in loops.items():
        results: dict[str, float] = {}
        bcc_label = [""]
        setups: list[tuple[str, Callable[[], AbstractContextManager[Any]]]] = [
            ("bare", nothing),
            ("vigil dedup on", lambda: vigil(True)),
            ("vigil dedup off", lambda: vigil(False)),
            ("bcc", functools.partial(bcc_tool, tool, bcc_label)),
        ]
        for label, setup in setups:
            with cgroup() as cg, setup():
                results[bcc_label[0] if label == "bcc" else label] = median_time(cg, argv, runs)
        base = results["bare"]
        for label, secs in results.items():
            print(
                f"  {loop:<10} {label:<24} {secs:8.3f} s  {secs / n * 1e6:8.2f} us/op  x{secs / base:5.3f}"
                f"  ({(secs / base - 1) * 100:+.1f}%)"
            )
    shutil.rmtree(data, ignore_errors=True)


# --- a realistic workload in a real container -------------------------------------------------

PODMAN = ["podman", "--runtime", "runc"]  # crun refuses cgroup v1 hybrid hosts
WORKLOAD_IMAGE = "localhost/vigil-bench:1.0"
DEMO_IMAGE = Path(__file__).resolve().parent.parent / "infra" / "host" / "demo-image.sh"

# Runs in the container under one `podman exec` for the whole measurement: says
# "ready", then for each number N read on stdin makes N requests round robin over
# the image's 16 files and says "done"; 0 ends it. The host reads the cgroup's CPU
# and the clock around each chunk, so podman exec's own start and exit (~0.2 s,
# ~40 ms of the container's CPU) fall outside every measured interval.
LOAD_LOOP = r"""
echo ready
while read n; do
    [ "$n" = 0 ] && exit 0
    i=0
    while [ $i -lt $n ]; do
        wget -q -O /dev/null http://127.0.0.1:8080/file$((i % 16 + 1)).bin || { echo "wget failed at $i"; exit 1; }
        i=$((i + 1))
    done
    echo done
done
"""

# label -> (container CPU s, wall s, openat loop CPU s, other work on the machine in CPUs) of one round
Round = dict[str, tuple[float, float, float, float]]
CPU, WALL, OPENAT, OTHER = range(4)
WORKLOAD_SETUPS = ("nothing", "empty raw sys_enter prog", "vigil, dedup on")
# Other work on the machine, in CPUs, past which a round does not count: on this
# 2-CPU machine quiet chunks measure about -0.1..0.25 (tick sampling, kernel threads).
OTHER_MAX = 0.35
TRACED, BUSY_BEFORE, BUSY_DURING = "another process traced syscalls", "busy before", "busy during a run"


def podman(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], check=True, capture_output=True, text=True, **kw)


def workload_image(ref: str = WORKLOAD_IMAGE) -> str:
    """The busybox image (sh, wget, httpd, /www/file1..16.bin), built once."""
    if subprocess.run([*PODMAN, "image", "exists", ref]).returncode != 0:
        subprocess.run(["bash", str(DEMO_IMAGE), "podman", ref], check=True, stdout=subprocess.DEVNULL)
    return ref


def cgroup_cpu(pid: int) -> Callable[[], float]:
    """A function returning the CPU seconds used so far by the cgroup of `pid`:
    cpuacct.usage in the v1 hierarchy (this hybrid host), else cgroup v2's
    cpu.stat usage_usec."""
    from collector.identity import cgroup2_mount

    v2 = ""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if "cpuacct" in ctrls.split(","):
            usage = Path("/sys/fs/cgroup") / ctrls / path.lstrip("/") / "cpuacct.usage"
            return lambda: int(usage.read_text()) / 1e9
        if ctrls == "":
            v2 = path
    mount = cgroup2_mount()
    assert mount is not None, f"no cpuacct or cgroup v2 path for pid {pid}"
    stat = mount / v2.lstrip("/") / "cpu.stat"
    return lambda: int(stat.read_text().split()[1]) / 1e6  # first line: usage_usec


@contextmanager
def web_container(cpuset: str = "") -> Iterator[tuple[str, Callable[[], float]]]:
    """A podman container running busybox httpd on 127.0.0.1:8080 (no network),
    in podman's own cgroup (/libpod_parent/libpod-<id> here), which the
    collector attributes through podman's on-disk state like any podman
    container's; on the CPUs `cpuset` names (all if empty). Yields its name
    and a reader of its cgroup's CPU seconds."""
    name = f"vigil-bench-{secrets.token_hex(4)}"
    limits = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
    limits += ["--cpuset-cpus", cpuset] if cpuset else []
    try:
        podman(
            "run", "-d", "--name", name, "--network", "none", *limits,
            workload_image(), "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www",
        )  # fmt: skip
        pid = int(podman("inspect", "-f", "{{.State.Pid}}", name).stdout)
        for _ in range(100):  # httpd listening
            probe = [*PODMAN, "exec", name, "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/index.html"]
            if subprocess.run(probe, capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        yield name, cgroup_cpu(pid)
    finally:
        subprocess.run([*PODMAN, "rm", "-f", "-t", "0", name], capture_output=True)


@contextmanager
def load_loop(name: str, cpu: Callable[[], float]) -> Iterator[Callable[[int], tuple[float, float, float]]]:
    """LOAD_LOOP in the container; yields run(requests) -> (container CPU s,
    wall s, other work on the machine in CPUs) of one chunk. Other work: the
    machine's busy time less the container's and this process's, per second."""
    proc = subprocess.Popen(
        [*PODMAN, "exec", "-i", name, "sh", "-c", LOAD_LOOP],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None

    def run(requests: int) -> tuple[float, float, float]:
        assert proc.stdin is not None
        b0, s0, c0, t0 = _busy_seconds(), _self_cpu(), cpu(), time.perf_counter()
        proc.stdin.write(f"{requests}\n")
        proc.stdin.flush()
        _expect(proc, "done")
        t1, c1, s1, b1 = time.perf_counter(), cpu(), _self_cpu(), _busy_seconds()
        return c1 - c0, t1 - t0, (b1 - b0 - (c1 - c0) - (s1 - s0)) / (t1 - t0)

    try:
        _expect(proc, "ready")
        yield run
        proc.stdin.write("0\n")
        proc.stdin.flush()
    finally:
        with suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _expect(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().strip()
    if line != word:
        proc.kill()
        raise SystemExit(f"workload: expected {word!r} from the load loop, got {line!r}: {proc.stderr.read()}")


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent in user and system time (all
    CPUs, /proc/stat; tick-sampled, so ~0.1 CPU either way over a run; irq and
    softirq time left out: the workload's loopback traffic is mostly there)."""
    user, nice, system = (int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def foreign_syscall_programs() -> int:
    """BPF programs other processes hold on raw sys_enter / sys_exit (a Vigil
    collector in a test run, say). While one is attached every syscall on the
    machine takes the tracing slow path, so "nothing attached" is not bare.
    (Classic syscalls:* tracepoints attached through perf events have the
    same effect and are not seen here.)"""
    found = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf_link":
                    continue
                info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
            except OSError:
                continue
            if "link_type:\traw_tracepoint" in info and ("tp_name:\tsys_enter" in info or "tp_name:\tsys_exit" in info):
                found += 1
    return found


def _wait_quiet(seconds: float) -> str:
    """Wait (bounded) until no other process traces syscalls and the machine is
    near idle (less than OTHER_MAX CPUs busy over half a second); "" if it is,
    else why not."""
    deadline = time.monotonic() + seconds
    while True:
        b0 = _busy_seconds()
        time.sleep(0.5)
        why = TRACED if foreign_syscall_programs() else BUSY_BEFORE if _busy_seconds() - b0 > OTHER_MAX / 2 else ""
        if not why or time.monotonic() > deadline:
            return why


def program_time(bpf: Any) -> int:
    """Nanoseconds every program of a BCC object has run so far (counted only
    while kernel BPF statistics are on)."""
    total = 0
    for fn in bpf.funcs.values():
        for line in Path(f"/proc/self/fdinfo/{fn.fd}").read_text().splitlines():
            key, _, value = line.partition(":")
            total += int(value) if key == "run_time_ns" else 0
    return total


@contextmanager
def bpf_run_stats() -> Iterator[None]:
    """Kernel BPF run-time statistics on while inside (BPF_ENABLE_STATS: a
    reference, unlike the kernel.bpf_stats_enabled sysctl other users share)."""
    from bcc import libbcc

    enable = libbcc.lib.bpf_enable_stats
    enable.restype, enable.argtypes = ctypes.c_int, [ctypes.c_int]
    fd = enable(0)  # BPF_STATS_RUN_TIME
    try:
        yield
    finally:
        if fd >= 0:
            os.close(fd)


@contextmanager
def _on_cpus(cpus: set[int]) -> Iterator[None]:
    """This thread (and the threads and processes it starts meanwhile) on `cpus`."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


_STOP = {"switching": False, "pending": 0}  # a stop signal waits while programs are switched


def _on_stop(signum: int, _frame: Any) -> None:
    """SIGTERM / SIGINT end the bench through its clean-ups (container, cgroups,
    collector), but not in the middle of an attach or detach: BCC would keep a
    closed descriptor, and the collector's own clean-up would then fail on it."""
    if _STOP["switching"]:
        _STOP["pending"] = signum
    elif signum == signal.SIGINT:
        raise KeyboardInterrupt
    else:
        sys.exit(128 + signum)


@contextmanager
def _switching() -> Iterator[None]:
    _STOP["switching"] = True
    try:
        yield
    finally:
        _STOP["switching"] = False
        signum, _STOP["pending"] = _STOP["pending"], 0
        if signum:
            _on_stop(int(signum), None)


@contextmanager
def _attached(sw: Switchable | None) -> Iterator[None]:
    if sw is not None:
        with _switching():
            sw.attach()
    try:
        yield
    finally:
        if sw is not None:
            with _switching():
                sw.detach()


@contextmanager
def _workload_rig() -> Iterator[tuple[Callable[[int], tuple[float, float, float]], Any, Path, dict[str, Any]]]:
    """The web container and its load loop, the collector, a test cgroup for
    the openat loop and a switch per setup (all detached). With 2+ CPUs the
    container gets the last CPU and this process's collector thread and
    nats-server the others; the openat loop runs on the container's CPU.
    Unpinned, wget and httpd hop between CPUs or not depending on what else
    runs (the collector's own drain, say): the container's CPU per request
    then moves by up to ~30 % with it (~1.1 ms on one CPU, 1.4-1.7 ms
    across two here), which hides the collector's cost or inflates it."""
    from bcc import BPF

    from collector.ebpf import _prepare_environment

    cpus = sorted(os.sched_getaffinity(0))
    work, rest = ({cpus[-1]}, set(cpus[:-1])) if len(cpus) > 1 else (set(cpus), set(cpus))
    with ExitStack() as stack:
        name, cpu = stack.enter_context(web_container(str(cpus[-1]) if len(cpus) > 1 else ""))
        with _on_cpus(rest):  # the collector's thread and nats-server inherit it
            col = stack.enter_context(vigil(True))
        stack.enter_context(_on_cpus(work))
        cg = stack.enter_context(cgroup())
        run = stack.enter_context(load_loop(name, cpu))
        _prepare_environment()
        switches: dict[str, Any] = {
            WORKLOAD_SETUPS[0]: None,
            WORKLOAD_SETUPS[1]: Switchable(BPF(text=EMPTY_SYS_ENTER.encode())),
            WORKLOAD_SETUPS[2]: Switchable(col.probe.bpf),
        }
        for sw in switches.values():
            if sw is not None:
                with _switching():
                    sw.detach()
        yield run, col, cg, switches


def workload(openloop: Path, quick: bool) -> None:
    """The collector is started once (its compile and attach take ~2 s) and its
    tracepoints are detached for the runs without it, attached for its runs,
    as breakdown() does: every round runs every setup, in forward then
    reverse order (ABC CBA ...), so load drifting on this shared machine and
    any order effect hit the setups alike. Starting the collector per run
    would put its own start-up (compile, NATS) next to the measured runs;
    while detached it is an idle 10 ms timer on another CPU, and the
    container's CPU only counts what runs in the container's processes (the
    BPF programs do). Chunks are short and rounds many: a chunk's CPU time
    varies by ~10 % here even on a quiet machine (it is a VM), so the medians
    need many pairs more than long runs.
    Each round first waits (bounded) until the machine is quiet: no other
    process with a program on sys_enter, less than OTHER_MAX CPUs of other
    work. A round during which either was not so does not count, and (not
    with --quick) rounds are added until `rounds` clean ones, at most twice as
    many. The collector's user-space cost (on the other CPU) is measured
    apart at the end, by user_space()."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        print("workload: skipped (needs podman and runc)")
        return
    requests, n_open, rounds = (100, 50_000, 6) if quick else (300, 100_000, 60)
    max_rounds, wait = (rounds, 5.0) if quick else (2 * rounds, 30.0)
    data = Path(tempfile.mkdtemp(prefix="vigil-bench-files-"))
    for i in range(100):
        (data / f"f{i}").write_text("x")
    argv = [str(openloop), str(data), str(n_open), "0", "0"]
    clean: list[Round] = []
    tainted: list[Round] = []
    causes: dict[str, int] = {}  # rounds that did not count, by why
    try:
        with _workload_rig() as (run, col, cg, switches):
            for attempt in range(-1, max_rounds):  # round -1 warms caches, the dedup map, identity
                if len(clean) >= rounds:
                    break
                why = _wait_quiet(wait)
                result: Round = {}
                for label in WORKLOAD_SETUPS[:: 1 if attempt % 2 == 0 else -1]:
                    with _attached(switches[label]):
                        c, w, other = run(requests)
                        result[label] = (c, w, timed(cg, argv), other)
                if not why and max(r[OTHER] for r in result.values()) > OTHER_MAX:
                    why = BUSY_DURING
                if not why and foreign_syscall_programs():
                    why = TRACED
                if attempt >= 0:
                    (tainted if why else clean).append(result)
                    causes[why] = causes.get(why, 0) + 1
            user = user_space(run, col, switches[WORKLOAD_SETUPS[2]], 10 * requests)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    left_out = ", ".join(f"{n} {why}" for why, n in causes.items() if why)
    if len(clean) < 3:
        print(f"workload: only {len(clean)} rounds on a quiet machine: all used ({left_out}); noisier")
        clean, left_out = clean + tainted, ""
    _report_workload(clean, left_out, user, requests, n_open)


def user_space(run: Callable[[int], Any], col: Any, full: Switchable, requests: int) -> dict[str, float]:
    """The collector's user-space CPU (this process; nats-server apart) for
    `requests` requests detached and attached, each run followed by a wait
    for its syscall-set drain (1 s timer); its records and events; its
    programs' own run time (kernel BPF statistics on for that run only)."""
    s0 = _self_cpu()
    run(requests)
    time.sleep(1.2)
    self_off = _self_cpu() - s0
    with _attached(full), bpf_run_stats():
        before, s0, ns = col.counters(), _self_cpu(), program_time(col.probe.bpf)
        run(requests)
        ns = program_time(col.probe.bpf) - ns
        time.sleep(1.2)
        after, self_on = col.counters(), _self_cpu() - s0
    return {
        "requests": requests,
        "self_off": self_off,
        "self_on": self_on,
        "decoded": after["decoded"] - before["decoded"],
        "events": after.get("events", 0) - before.get("events", 0),
        "program_ns": ns,
    }


def _ratio(rounds: list[Round], label: str, i: int) -> tuple[float, list[float]]:
    """(with - without) / without of the medians, in %, and of each round's pair, sorted."""
    base = _median(rounds, WORKLOAD_SETUPS[0], i)
    paired = sorted((r[label][i] / r[WORKLOAD_SETUPS[0]][i] - 1) * 100 for r in rounds)
    return (_median(rounds, label, i) / base - 1) * 100, paired


def _paired(ratios: list[float]) -> str:
    """Median and interquartile range of the per-round ratios."""
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return f"{q[1]:+.1f} [{q[0]:+.1f}..{q[2]:+.1f}]"


def _median(rounds: list[Round], label: str, i: int) -> float:
    return statistics.median(r[label][i] for r in rounds)


def _report_workload(rounds: list[Round], left_out: str, user: dict[str, float], requests: int, n_open: int) -> None:
    print(
        f"workload: busybox httpd in a podman (runc) container on one CPU, {requests:,} wget requests a run from"
        f" inside it; medians of {len(rounds)} interleaved rounds" + (f" (left out: {left_out})" if left_out else "")
    )
    other = statistics.median(r[label][OTHER] for r in rounds for label in WORKLOAD_SETUPS)
    print(f"  other work on the machine during the runs: median {other:.2f} CPUs (of {os.cpu_count()})")
    print("  vs nothing: change of the medians (each round's own pair: median [interquartile range])")
    for label in WORKLOAD_SETUPS:
        c, w = _median(rounds, label, CPU), _median(rounds, label, WALL)
        line = f"  {label:<26} container CPU {c:6.3f} s {c / requests * 1e6:5.0f} us/req  wall {w:6.3f} s"
        for i, what in ((CPU, "CPU"), (WALL, "wall")):
            if label != WORKLOAD_SETUPS[0]:
                med, paired = _ratio(rounds, label, i)
                line += f"  {what} {med:+5.1f}% ({_paired(paired)})"
        print(line)
    print(f"  openat+close loop in the same rounds: CPU time, {n_open:,} iterations a run")
    base = _median(rounds, WORKLOAD_SETUPS[0], OPENAT)
    for label in WORKLOAD_SETUPS:
        secs = _median(rounds, label, OPENAT)
        line = f"    {label:<26} {secs:6.3f} s {secs / n_open * 1e9:5.0f} ns/op"
        if label != WORKLOAD_SETUPS[0]:
            med, paired = _ratio(rounds, label, OPENAT)
            line += f"  {(secs - base) / n_open * 1e9:+4.0f} ns/op  {med:+5.1f}% ({_paired(paired)})"
        print(line)
    n, bare = user["requests"], _median(rounds, WORKLOAD_SETUPS[0], CPU) / requests
    extra = (user["self_on"] - user["self_off"]) / n
    print(
        f"  collector, {n:,.0f} more requests: {user['decoded']:,.0f} records decoded, {user['events']:,.0f} events"
        f" published; its user space (this process, nats-server apart) {extra * 1e6:.0f} us of CPU per request"
        f" more than detached, on the other CPU; its programs ran {user['program_ns'] / n / 1e3:.1f} us per request"
        " (kernel BPF stats; every process's syscalls counted)"
    )
    rows = [
        ("httpd + wget in a container, full collector (dedup on)", WORKLOAD_SETUPS[2], CPU),
        ("httpd + wget in a container, empty program on raw sys_enter", WORKLOAD_SETUPS[1], CPU),
        ("openat+close loop, full collector (dedup on)", WORKLOAD_SETUPS[2], OPENAT),
        ("openat+close loop, empty program on raw sys_enter (the floor)", WORKLOAD_SETUPS[1], OPENAT),
    ]
    print(f"summary, (with - without) / without of the medians (load average {os.getloadavg()[0]:.1f}):")
    print(f"  | {'measurement':<62} | {'CPU':>7} | {'wall':>7} |")
    print(f"  |{'-' * 64}|{'-' * 9}|{'-' * 9}|")
    for text, label, i in rows:
        cpu = f"{_ratio(rounds, label, i)[0]:+.1f}%"
        wall = f"{_ratio(rounds, label, WALL)[0]:+.1f}%" if i == CPU else "-"
        print(f"  | {text:<62} | {cpu:>7} | {wall:>7} |")
    for text, value in (
        ("collector user space, on the other CPU (/ bare container CPU)", extra / bare),
        ("its programs' run time, all processes' (/ bare container CPU)", user["program_ns"] / n / 1e9 / bare),
    ):
        print(f"  | {text:<62} | {f'{value * 100:+.1f}%':>7} | {'-':>7} |")


def drain(openloop: Path, quick: bool) -> None:
    from collector import abi, identity
    from collector.ebpf import Probe, ProbeOptions
    from collector.enrich import Enricher
    from collector.workloads import Registry

    rate, seconds = 100_000, (2 if quick else 5)
    total = rate * seconds
    probe = Probe(ProbeOptions(syscalls=False))
    enricher = Enricher(node="bench", paths=identity.CgroupPaths(), workloads=Registry(), host_processes="tag")
    stats = abi.DecodeStats()
    busy = [0.0]
    stop = threading.Event()
    decoded = [0]

    def consume() -> None:
        while not stop.is_set():
            time.sleep(0.01)
            t = time.thread_time()
            for data in probe.consume():
                rec = abi.decode(data, stats)
                if rec is not None:
                    decoded[0] += len(enricher.handle(rec))
            busy[0] += time.thread_time() - t

    th = threading.Thread(target=consume)
    th.start()
    before = probe.counters()
    data = Path(tempfile.mkdtemp(prefix="vigil-bench-miss-"))
    with cgroup() as cg:
        wall = timed(cg, [str(openloop), str(data), str(total), "1", str(rate)], cpu=False)
    time.sleep(0.3)
    stop.set()
    th.join()
    after = probe.counters()
    probe.close()
    submitted = after["submitted"] - before["submitted"]
    dropped = after["dropped"] - before["dropped"]
    print(f"drain: offered {total} unique opens in {wall:.2f} s ({total / wall:,.0f} ev/s)")
    print(
        f"  kernel submitted {submitted:,}  dropped {dropped:,}  decode errors "
        f"{stats.unknown_op + stats.short + stats.size_mismatch}"
    )
    print(
        f"  user space decoded+enriched {decoded[0]:,} events using {busy[0]:.2f} s of consumer CPU: "
        f"{stats.decoded / max(busy[0], 1e-9):,.0f} records/s"
    )
    shutil.rmtree(data, ignore_errors=True)


def publish(quick: bool) -> None:
    """The synthetic source through the whole publishing path (batching, msgpack,
    exactly-once publish to JetStream, acks awaited)."""
    from collector.main import Collector
    from services.runtime import embedded
    from tests.support import make_settings

    total = 100_000 if quick else 400_000
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-pub-"))
    server = embedded.start(tmp / "nats", port=-1)
    try:
        settings = make_settings(
            tmp / "data",
            server.url,
            COLLECTOR_SOURCE="synthetic",
            COLLECTOR_SYNTHETIC_RATE="1000000",
            COLLECTOR_SYNTHETIC_EVENTS=str(total),
            COLLECTOR_SYNTHETIC_CONTAINERS="32",
            COLLECTOR_SYNTHETIC_IMAGES="8",
        )
        t = time.perf_counter()
        stats = asyncio.run(Collector(settings).run())
        secs = time.perf_counter() - t
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"publish: synthetic {total:,} events -> JetStream (acked) in {secs:.2f} s: {stats['events'] / secs:,.0f} ev/s,"
        f" {stats['batches']} batches"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--breakdown", action="store_true", help="only the openat cost breakdown")
    parser.add_argument("--baseline", type=Path, help="with --breakdown: also measure this bpf/collector.c")
    parser.add_argument("--workload", action="store_true", help="only the realistic workload in a container")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _on_stop)
    signal.signal(signal.SIGINT, _on_stop)
    from collector.ebpf import missing

    if lacking := missing():
        print("bench.collector: kernel parts skipped: " + "; ".join(lacking))
        publish(args.quick)
        return
    with tempfile.TemporaryDirectory() as tmp:
        openloop, forkloop = compile_loops(Path(tmp))
        if args.breakdown:
            breakdown(openloop, args.quick, args.baseline)
            return
        if args.workload:
            workload(openloop, args.quick)
            return
        drain(openloop, args.quick)
        overhead(openloop, forkloop, args.quick)
        workload(openloop, args.quick)
    publish(args.quick)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
