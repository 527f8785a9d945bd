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

Needs root, BCC and a C compiler.
`python -m bench.collector [--quick] [--breakdown [--baseline OLD.c]]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
def vigil(dedup: bool) -> Iterator[None]:
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
        yield
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
    from collector.ebpf import header_tree

    env = {**os.environ, "BCC_KERNEL_SOURCE": str(header_tree())}
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
        setups = [
            ("bare", nothing),
            ("vigil dedup on", lambda: vigil(True)),
            ("vigil dedup off", lambda: vigil(False)),
            ("bcc", lambda tool=tool, out=bcc_label: bcc_tool(tool, out)),
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
    args = parser.parse_args()
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
        drain(openloop, args.quick)
        overhead(openloop, forkloop, args.quick)
    publish(args.quick)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
