"""Behaviour models: cost of the pure parts the audit-report-writer runs.

- window fold: raw events per second through ``modeling.advance`` with one
  open window selecting a quarter of the containers (the writer reads every
  EVENTS batch while a window is open), and with no window (the idle cost);
- path generalisation: paths per second through ``paths.generalise`` (a small repeated
  set, so this measures its LRU cache, as a workload repeating its paths would);
- merge + render: one model of ``--replicas`` containers, each with
  ``--files`` files and ~300 syscalls, then the AppArmor and seccomp texts.

    .venv/bin/python -m bench.models [--quick] [--events 400000] [--replicas 50] [--files 2000]
"""

from __future__ import annotations

import argparse
import random
import time

from contracts.events import ClockTicked, Container, FileAccess, FileOpened, Process, RawEvent, SyscallsObserved
from contracts.models import StartModeling
from services.audit_report_writer import apparmor, modeling, paths, seccomp

SEC = 1_000_000_000
T0 = 1_767_225_600 * SEC
SYSCALLS = [f"sys_{i}" for i in range(300)]


def raw_events(n: int, containers: int, rnd: random.Random) -> list[RawEvent]:
    ctrs = [
        Container(id=f"c{i}", image_name=f"img{i % 4}", image_tag="1", name=f"app{i % 3}") for i in range(containers)
    ]
    out: list[RawEvent] = []
    for i in range(n):
        ctr = ctrs[i % containers]
        proc = Process(pid=100 + i % 50, path="/usr/bin/app")
        if i % 5 == 0:
            out.append(SyscallsObserved(time=T0 + i, container=ctr, process=proc, syscalls=rnd.sample(SYSCALLS, 8)))
        else:
            path = f"/var/lib/app/{rnd.randrange(500)}/data-{rnd.randrange(50)}.db"
            out.append(FileOpened(time=T0 + i, container=ctr, process=proc, file=FileAccess(path=path, flags=2)))
    return out


def bench_window(events: list[RawEvent], with_window: bool) -> float:
    state = modeling.Windows()
    if with_window:
        modeling.request(state, StartModeling(id="r", time=T0, image_name="img0", duration=3600 * SEC))
    start = time.perf_counter()
    for event in events:
        modeling.advance(state, event)
    return len(events) / (time.perf_counter() - start)


def bench_paths(n: int, rnd: random.Random) -> float:
    samples = [
        f"/proc/{rnd.randrange(99999)}/status",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        f"/tmp/tmp{rnd.randrange(10**8):08d}x",
        "/var/lib/kubelet/pods/123e4567-e89b-12d3-a456-426614174000/volumes/x",
        "/etc/nginx/nginx.conf",
    ]
    start = time.perf_counter()
    for i in range(n):
        paths.generalise(samples[i % len(samples)])
    return n / (time.perf_counter() - start)


def bench_merge(replicas: int, files: int, rnd: random.Random) -> tuple[float, float, int, int]:
    observations = []
    for r in range(replicas):
        key = f"web@{r}"
        observations += [
            modeling.Observation(key, "open", f"/srv/app/f{rnd.randrange(files * 2)}", "r") for _ in range(files)
        ]
        observations += [modeling.Observation(key, "syscalls", s) for s in rnd.sample(SYSCALLS, 280)]
    reps = modeling.fold(observations)
    start = time.perf_counter()
    model = modeling.build_model(reps, image_name="web", image_tag="1")
    merged = time.perf_counter() - start
    start = time.perf_counter()
    aa = apparmor.render(model)
    sc = seccomp.render(model)
    rendered = time.perf_counter() - start
    return merged, rendered, len(aa), len(sc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--replicas", type=int, default=50)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    if args.quick:
        args.events, args.replicas, args.files = 50_000, 10, 500
    rnd = random.Random(7)
    events = [*raw_events(args.events, 40, rnd), ClockTicked(time=T0 + args.events)]
    idle = bench_window(events, with_window=False)
    busy = bench_window(events, with_window=True)
    print(f"window fold, no window open : {idle:>12,.0f} raw events/s")
    print(f"window fold, one window open: {busy:>12,.0f} raw events/s  (ratio open/idle {busy / idle:.2f})")
    print(f"path generalisation         : {bench_paths(args.events, rnd):>12,.0f} paths/s")
    merged, rendered, aa, sc = bench_merge(args.replicas, args.files, rnd)
    print(
        f"merge {args.replicas} replicas x {args.files} files + 280 syscalls: {merged * 1000:.1f} ms; "
        f"render AppArmor ({aa:,} B) + seccomp ({sc:,} B): {rendered * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
