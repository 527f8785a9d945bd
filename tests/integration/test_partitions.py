"""Partition leases on a real nats-server: instances split the partitions fairly,
a stopping instance hands its partitions over at once, a dead one's are taken
over after its lease expired, and no partition ever has two owners."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from services.runtime.partitions import Leases, owners
from tests.support import make_settings, open_bus, wait_for

P = 8


class Instance:
    """Leases for one pretend instance, recording what it was given, into a shared ownership log."""

    def __init__(self, bus: Any, name: str, ttl: float, live: dict[int, str], violations: list[str]) -> None:
        self.name = name
        self.stopping = asyncio.Event()
        self.leases = Leases(bus, "svc", name, P, ttl, self.assign, self.revoke)
        self.live, self.violations = live, violations
        self.task: asyncio.Task[None] | None = None
        self.dead = False
        self.taken: dict[int, float] = {}  # partition -> wall time it was assigned here

    async def assign(self, p: int) -> None:
        if p in self.live:
            self.violations.append(f"{self.name} took {p} while {self.live[p]} held it")
        self.live[p] = self.name
        self.taken[p] = time.time()

    async def revoke(self, p: int) -> None:
        if self.dead:
            return  # a killed process runs no code: its partitions stay "held" until taken over
        assert self.live.get(p) == self.name
        del self.live[p]

    def start(self) -> None:
        self.task = asyncio.create_task(self.leases.run(self.stopping))

    async def stop(self) -> None:
        self.stopping.set()
        assert self.task is not None
        await self.task

    async def die(self, bus: Any) -> None:
        """Like a SIGKILL: the connection goes, nothing is released or renewed."""
        self.dead = True
        await bus.nc.close()
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def test_instances_split_hand_over_and_never_overlap(tmp_path: Path, nats_server: Any) -> None:
    settings = make_settings(tmp_path, nats_server.url)

    async def scenario() -> None:
        bus = await open_bus(settings)
        live: dict[int, str] = {}
        violations: list[str] = []
        c_bus = await open_bus(settings)
        a, b = (Instance(bus, n, 1.5, live, violations) for n in ("a", "b"))
        c = Instance(c_bus, "c", 1.5, live, violations)
        try:
            a.start()
            await wait_for(lambda: len(a.leases.owned) == P)
            b.start()  # a gives up half: b takes what a released
            await wait_for(lambda: len(a.leases.owned) == len(b.leases.owned) == P // 2, timeout=20)
            assert set(a.leases.owned).isdisjoint(b.leases.owned)
            assert await owners(bus, "svc", P) == {p: ("a" if p in a.leases.owned else "b") for p in range(P)}

            c.start()  # three instances: 3 + 3 + 2
            await wait_for(lambda: sorted(len(i.leases.owned) for i in (a, b, c)) == [2, 3, 3], timeout=20)

            await b.stop()  # a graceful stop releases at once
            await wait_for(lambda: len(a.leases.owned) + len(c.leases.owned) == P, timeout=20)

            expiry = {p: held.expires for p, held in c.leases.held.items()}
            assert expiry
            await c.die(c_bus)  # a takes c's partitions only after c's leases expired
            assert await owners(bus, "svc", P) == {p: ("a" if p in a.leases.owned else "c") for p in range(P)}
            for p in expiry:
                del live[p]  # the dead process's state died with it; the times below prove the hand-over waited
            await wait_for(lambda: len(a.leases.owned) == P, timeout=20)
            assert all(a.taken[p] > expires for p, expires in expiry.items()), (a.taken, expiry)
            assert set(live) == set(range(P)) and set(live.values()) == {"a"}
            await a.stop()
            assert await owners(bus, "svc", P) == {}
            assert violations == []
        finally:
            await bus.close()

    asyncio.run(scenario())
