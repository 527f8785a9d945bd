"""Partition ownership for scaled-out services: leases in a NATS KV bucket.

A partitioned app (the profile-learner) keeps its state per input partition,
so any instance can own any partition and the outputs do not depend on how
many instances run. :class:`Leases` decides which partitions this instance
owns; the runner starts and stops the app's per-partition consumers when
ownership changes.

Protocol (bucket :data:`~contracts.subjects.LEASE_BUCKET`, one key per
partition, ``<service>.lease.<p>``, value ``{"owner", "expires"}``; one
membership key per live instance, ``<service>.member.<instance>``):

- Every ``ttl / 3`` an instance renews its membership and its leases. A
  renewal is a compare-and-set on the key's revision, so it fails if anybody
  else wrote the key meanwhile.
- Fair share = ceil(partitions / live members). An instance above its share
  releases partitions (the app stops the consumers and snapshots first, then
  the lease is deleted); below it, it takes free partitions: a key that does
  not exist (create) or whose lease expired more than a grace period ago
  (compare-and-set on the expired revision, so two takers cannot both win).
- Fencing: an instance that could not renew a lease stops that partition
  before the lease can expire (``expires - ttl/3``), and a taker waits until
  ``expires + ttl/3``, so two owners never process a partition at once even
  with some clock skew between hosts. The taker also recreates the partition's
  durable consumers at its own position, which ends a stale owner's fetches.
- A stopping instance releases everything at once, so its partitions move
  without waiting for the ttl; instances watch the bucket and run a round as
  soon as a lease is released or a new instance joins.

Wall-clock time is used here on purpose: leases are about live processes, not
about the events' time; no service core sees it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from contracts.subjects import LEASE_BUCKET
from services.runtime.bus import Bus, retry_transient

log = logging.getLogger("vigil.partitions")

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_=-]")


class Lease(msgspec.Struct, frozen=True):
    owner: str
    expires: float  # wall-clock seconds


@dataclass
class _Held:
    revision: int
    expires: float


async def _first(a: asyncio.Event, b: asyncio.Event, timeout: float) -> None:
    """Until either event is set, at most ``timeout`` seconds."""
    waits = [asyncio.create_task(a.wait()), asyncio.create_task(b.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


def fair_share(partitions: int, members: int) -> int:
    return math.ceil(partitions / max(members, 1))


def lease_key(service: str, partition: int) -> str:
    return f"{service}.lease.{partition}"


async def lease_bucket(bus: Bus) -> KeyValue:
    """The bucket (created with the others by ``ensure_buckets``)."""
    return await retry_transient("opening the lease bucket", lambda: bus.js.key_value(LEASE_BUCKET))


async def owners(bus: Bus, service: str, partitions: int) -> dict[int, str]:
    """partition -> owning instance, for leases that have not expired (for `vigil status` and tests)."""
    try:
        kv = await lease_bucket(bus)
    except nats.js.errors.BucketNotFoundError:
        return {}  # no service ever ran
    out: dict[int, str] = {}
    for p in range(partitions):
        lease = await _read(kv, lease_key(service, p))
        if lease is not None and lease[0].expires > time.time():
            out[p] = lease[0].owner
    return out


async def _read(kv: KeyValue, key: str) -> tuple[Lease, int] | None:
    try:
        entry = await kv.get(key)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        return None
    if not entry.value:
        return None
    try:
        return msgspec.json.decode(entry.value, type=Lease), entry.revision or 0
    except msgspec.DecodeError:
        return None


class Leases:
    """Owns a fair share of ``partitions`` for ``service``; calls ``assign(p)``
    when a partition becomes ours and ``revoke(p)`` before it stops being ours."""

    def __init__(
        self,
        bus: Bus,
        service: str,
        instance: str,
        partitions: int,
        ttl: float,
        assign: Callable[[int], Awaitable[None]],
        revoke: Callable[[int], Awaitable[None]],
    ) -> None:
        self.bus = bus
        self.service = service
        self.instance = _KEY_UNSAFE.sub("_", instance)
        self.partitions = partitions
        self.ttl = ttl
        self._assign = assign
        self._revoke = revoke
        self.held: dict[int, _Held] = {}
        self._kv: KeyValue | None = None

    @property
    def owned(self) -> list[int]:
        return sorted(self.held)

    async def run(self, stopping: asyncio.Event) -> None:
        self._kv = await lease_bucket(self.bus)
        wake = asyncio.Event()
        watch = asyncio.create_task(self._watch(wake))
        try:
            while not stopping.is_set():
                wake.clear()
                try:
                    await self.tick()
                except Exception as exc:  # noqa: BLE001 - a failing-over cluster: try again next tick
                    log.warning("%s: lease round failed (%s: %s)", self.service, type(exc).__name__, exc)
                    await self._fence()
                await _first(stopping, wake, self.ttl / 3)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await self.release_all()

    async def _watch(self, wake: asyncio.Event) -> None:
        """Run the next round at once when a partition is released or an instance joins,
        so partitions move within milliseconds rather than a round later. (Best effort:
        without it the rounds every ttl/3 still get there.)"""
        if self._kv is None:
            return
        try:
            watcher = await self._kv.watch(f"{self.service}.>")
        except Exception as exc:  # noqa: BLE001
            log.debug("%s: no lease watch (%s)", self.service, exc)
            return
        members: set[str] = set()
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                released = ".lease." in entry.key and entry.operation in ("DEL", "PURGE")
                joined = ".member." in entry.key and entry.key not in members and entry.operation is None
                if ".member." in entry.key:
                    members.add(entry.key)
                if released or joined:
                    wake.set()
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it unannotated

    async def tick(self) -> None:
        kv = self._kv or await lease_bucket(self.bus)
        now = time.time()
        member = f"{self.service}.member.{self.instance}"
        await kv.put(member, msgspec.json.encode(Lease(self.instance, now + self.ttl)))
        await self._renew(kv, now)
        share = fair_share(self.partitions, await self._members(kv, now))
        for p in sorted(self.held, reverse=True)[: max(0, len(self.held) - share)]:
            await self._release(kv, p)
        for p in range(self.partitions):
            if len(self.held) >= share:
                break
            if p not in self.held:
                await self._try_take(kv, p, now)

    async def _members(self, kv: KeyValue, now: float) -> int:
        """Live instances: membership keys not expired (listed from the bucket's stream
        subjects: one API call, no watcher consumer)."""
        prefix = f"$KV.{LEASE_BUCKET}."
        info = await self.bus.js.stream_info(f"KV_{LEASE_BUCKET}", subjects_filter=f"{prefix}{self.service}.member.*")
        alive = 0
        for subject in info.state.subjects or {}:
            key = subject[len(prefix) :]
            lease = await _read(kv, key)
            alive += lease is not None and lease[0].expires > now
            if lease is not None and lease[0].expires < now - 10 * self.ttl:
                await kv.purge(key)  # an instance long gone: keep the member list short
        return max(alive, 1)

    async def _renew(self, kv: KeyValue, now: float) -> None:
        for p, held in list(self.held.items()):
            value = msgspec.json.encode(Lease(self.instance, now + self.ttl))
            try:
                held.revision = await kv.update(lease_key(self.service, p), value, last=held.revision)
                held.expires = now + self.ttl
            except nats.js.errors.KeyWrongLastSequenceError:
                log.warning("%s: partition %d was taken over; stopping it", self.service, p)
                await self._drop(p)
            except Exception as exc:  # noqa: BLE001 - could not renew: keep it only while the lease is surely ours
                log.warning("%s: renewing partition %d failed (%s)", self.service, p, exc)
        await self._fence()

    async def _fence(self) -> None:
        """Stop every partition whose lease could expire before the next renewal."""
        deadline = time.time() + self.ttl / 3
        for p, held in list(self.held.items()):
            if held.expires <= deadline:
                log.warning("%s: lease on partition %d about to expire unrenewed; stopping it", self.service, p)
                await self._drop(p)

    async def _try_take(self, kv: KeyValue, p: int, now: float) -> None:
        key = lease_key(self.service, p)
        current = await _read(kv, key)
        value = msgspec.json.encode(Lease(self.instance, now + self.ttl))
        try:
            if current is None:
                revision = await kv.create(key, value)
            elif current[0].owner == self.instance or current[0].expires + self.ttl / 3 < now:
                revision = await kv.update(key, value, last=current[1])
            else:
                return
        except nats.js.errors.KeyWrongLastSequenceError:
            return  # somebody else was faster
        self.held[p] = _Held(revision, now + self.ttl)
        log.info("%s: %s owns partition %d", self.service, self.instance, p)
        try:
            await self._assign(p)
        except Exception:
            log.exception("%s: starting partition %d failed; releasing it", self.service, p)
            await self._release(kv, p)

    async def _release(self, kv: KeyValue, p: int) -> None:
        held = self.held.get(p)
        await self._drop(p)
        if held is None:
            return
        try:
            await kv.delete(lease_key(self.service, p), last=held.revision)
        except Exception as exc:  # noqa: BLE001 - it expires anyway
            log.warning("%s: releasing partition %d failed (%s); it expires in %.0fs", self.service, p, exc, self.ttl)

    async def _drop(self, p: int) -> None:
        if self.held.pop(p, None) is not None:
            await self._revoke(p)

    async def release_all(self) -> None:
        kv = self._kv
        for p in sorted(self.held):
            if kv is None:
                await self._drop(p)
            else:
                await self._release(kv, p)
        if kv is not None:
            try:
                await kv.delete(f"{self.service}.member.{self.instance}")
            except Exception:  # noqa: BLE001 - it expires anyway
                pass
