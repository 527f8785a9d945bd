"""Event sources other than the kernel: a JSONL trace and a synthetic load generator.

Invariants:
- a source is an async iterator of lists of raw events (chunks), so the
  collector loop treats kernel, trace and synthetic input the same way;
- the synthetic generator is deterministic for a given seed: the same
  settings produce the same events (times aside, which come from ``clock``);
- the trace source ends at end of file; the others run until stopped.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from contracts import trace
from contracts.errors import VigilError
from contracts.events import (
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

KINDS = ("exec", "open", "dns", "connect", "syscalls")


class SourceError(VigilError, ValueError):
    pass


def parse_mix(text: str) -> dict[str, float]:
    """``exec=1,open=6`` → normalised weights; unknown kinds name themselves."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, value = part.partition("=")
        if kind not in KINDS:
            raise SourceError(f"collector.synthetic_mix: unknown kind {kind!r} (one of {', '.join(KINDS)})")
        try:
            weights[kind] = float(value or 1)
        except ValueError as exc:
            raise SourceError(f"collector.synthetic_mix: bad weight in {part!r}") from exc
    total = sum(weights.values())
    if total <= 0:
        raise SourceError("collector.synthetic_mix: needs at least one positive weight")
    return {k: v / total for k, v in weights.items()}


async def trace_source(path: Path, chunk: int = 500) -> AsyncIterator[list[RawEvent]]:
    buf: list[RawEvent] = []
    with open(path, "rb") as fh:
        for event in trace.read(fh):
            buf.append(event)
            if len(buf) >= chunk:
                yield buf
                buf = []
                await asyncio.sleep(0)
    if buf:
        yield buf


@dataclass(frozen=True)
class SyntheticSpec:
    rate: int = 1000
    containers: int = 4
    images: int = 2
    mix: str = "exec=1,open=6,dns=1,connect=1,syscalls=1"
    total: int = 0  # 0: unbounded
    node: str = "synthetic"
    seed: int = 1


class Synthetic:
    """A load generator: ``rate`` events/s over ``containers`` containers of ``images`` images."""

    def __init__(self, spec: SyntheticSpec, clock: Callable[[], int] = time.time_ns) -> None:
        self.spec = spec
        self.clock = clock
        self.rng = random.Random(spec.seed)
        weights = parse_mix(spec.mix)
        self.kinds = list(weights)
        self.weights = list(weights.values())
        self.containers = [
            Container(
                id=f"{i:064x}",
                image_name=f"synthetic/app-{i % spec.images}",
                image_tag=f"1.{i % 3}",
                pod=f"app-{i}",
                namespace="synthetic",
                name="app",
            )
            for i in range(spec.containers)
        ]
        self.made = 0

    def make(self, n: int) -> list[RawEvent]:
        now = self.clock()
        kinds = self.rng.choices(self.kinds, self.weights, k=n)
        out: list[RawEvent] = []
        for i, kind in enumerate(kinds):
            out.append(self._event(kind, now + i, self.rng.choice(self.containers)))
        self.made += n
        return out

    def _event(self, kind: str, t: int, c: Container) -> RawEvent:
        r = self.rng.randrange(64)
        proc = Process(pid=1000 + r, ppid=1, comm="app", path="/usr/bin/app")
        node = self.spec.node
        if kind == "exec":
            p = Process(
                pid=2000 + r,
                ppid=1000,
                comm=f"tool{r % 8}",
                path=f"/usr/bin/tool{r % 8}",
                argv=[f"tool{r % 8}", "-x"],
                ancestors=["/usr/bin/app"],
            )
            return ExecObserved(time=t, node=node, container=c, process=p)
        if kind == "open":
            return FileOpened(
                time=t, node=node, container=c, process=proc, file=FileAccess(path=f"/data/file{r}", flags=0)
            )
        if kind == "dns":
            return DnsQueried(
                time=t, node=node, container=c, process=proc, dns=DnsQuery(name=f"svc{r % 16}.example.com")
            )
        if kind == "connect":
            return ConnectObserved(
                time=t, node=node, container=c, process=proc, net=NetConnect(addr=f"10.0.0.{r}", port=443)
            )
        return SyscallsObserved(time=t, node=node, container=c, process=proc, syscalls=["read", "write"])

    async def run(self, chunk_interval: float = 0.01) -> AsyncIterator[list[RawEvent]]:
        start = time.monotonic()
        while not self.spec.total or self.made < self.spec.total:
            due = int((time.monotonic() - start) * self.spec.rate) - self.made
            if self.spec.total:
                due = min(due, self.spec.total - self.made)
            if due > 0:
                yield self.make(due)
            await asyncio.sleep(chunk_interval)
