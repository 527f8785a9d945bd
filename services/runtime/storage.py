"""Bounded storage: the safe point of EVENTS, its compaction, shared snapshots and usage.

Invariants (docs/configuration.md, "Storage"):

- A message of a compacted stream (EVENTS) leaves only by :func:`compact`, and only
  at or below its subject's *safe point*: the lowest ack floor of every durable
  consumer whose filter covers the subject, and the sequence the caller's shared
  snapshot covers. A durable that exists but does not run holds the safe point
  back, so nothing it has not acknowledged is ever removed.
- JetStream itself never drops a message of a compacted stream: those streams have
  discard *new* (a full stream refuses writes) and no JetStream ``max_age``.
- A snapshot that a purge relies on is in the NATS object store
  (:data:`~contracts.subjects.SNAPSHOT_OBJECTS`), so any host taking a partition
  over starts from it, not from a log whose head is gone.

Compaction is an adapter concern: it reads the wall clock (for ``max_age``), never
a service core.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from contracts.subjects import SNAPSHOT_OBJECTS, STREAMS, subject_matches
from services.runtime.settings import Settings

log = logging.getLogger("vigil.storage")


# --- the safe point ----------------------------------------------------------------


def _filters(info: js_api.ConsumerInfo) -> list[str]:
    cfg = info.config
    return list(cfg.filter_subjects or ()) or ([cfg.filter_subject] if cfg.filter_subject else [">"])


async def durables_floor(js: JetStreamContext, stream: str, subject: str) -> int | None:
    """The lowest ack floor (stream sequence) of the durable consumers of ``stream`` that
    read ``subject``; None when there is none (then nothing is known to be consumed)."""
    floors = [
        int(info.ack_floor.stream_seq) if info.ack_floor else 0
        for info in await js.consumers_info(stream)
        if info.config.durable_name and any(subject_matches(f, subject) for f in _filters(info))
    ]
    return min(floors) if floors else None


async def safe_point(js: JetStreamContext, stream: str, subject: str, covered: int) -> int:
    """Highest sequence of ``subject`` that may leave ``stream``: acknowledged by every
    durable reading it and covered (``covered``) by the caller's shared snapshot."""
    floor = await durables_floor(js, stream, subject)
    return 0 if floor is None else min(floor, covered)


# --- compaction ----------------------------------------------------------------------


@dataclass(frozen=True)
class Compaction:
    stream: str
    subject: str
    safe: int  # the safe point when it ran
    upto: int  # messages with seq <= upto were purged (0: nothing)
    purged: int
    reason: str  # "bytes", "age" or "" (not due)


async def compact(
    js: JetStreamContext, settings: Settings, stream: str, subject: str, covered: int, now: float | None = None
) -> Compaction:
    """Purge ``subject`` of ``stream`` below its safe point when it is due: the stream
    holds ``storage.compact_at`` of its ``max_bytes`` (everything safe goes), or
    ``max_age`` is set (what is safe *and* older goes)."""
    limits = settings.streams.of(stream)
    info = await js.stream_info(stream)
    by_bytes = bool(limits.max_bytes) and info.state.bytes >= settings.storage.compact_at * limits.max_bytes
    if not by_bytes and not limits.max_age:
        return Compaction(stream, subject, 0, 0, 0, "")
    safe = await safe_point(js, stream, subject, covered)
    upto, reason = safe, "bytes"
    if not by_bytes:
        cutoff = (time.time() if now is None else now) - float(limits.max_age)
        upto, reason = await _last_older_than(js, stream, subject, safe, cutoff), "age"
    if upto <= 0:
        return Compaction(stream, subject, safe, 0, 0, reason)
    before = await _subject_count(js, stream, subject)
    await js.purge_stream(stream, subject=subject, seq=upto + 1)  # purges seq < upto + 1
    purged = before - await _subject_count(js, stream, subject)
    if purged:
        log.info(
            "%s %s: purged %d messages up to seq %d (%s; safe point %d)", stream, subject, purged, upto, reason, safe
        )
    return Compaction(stream, subject, safe, upto, purged, reason)


async def _subject_count(js: JetStreamContext, stream: str, subject: str) -> int:
    info = await js.stream_info(stream, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def _stored_at(js: JetStreamContext, stream: str, subject: str, seq: int) -> tuple[int, float] | None:
    """(seq, store time) of the first message of ``subject`` at or after ``seq``."""
    try:
        msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
    except NotFoundError:
        return None
    stamp = msg.time.timestamp() if msg.time is not None else 0.0
    return (int(msg.seq or 0), stamp)


async def _last_older_than(js: JetStreamContext, stream: str, subject: str, upto: int, cutoff: float) -> int:
    """The highest sequence <= ``upto`` of a ``subject`` message stored before ``cutoff``
    (0: none), by binary search over the stream's sequences (store times grow with them)."""
    lo, hi, best = 1, upto, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        found = await _stored_at(js, stream, subject, mid)
        if found is None or found[0] > upto or found[1] >= cutoff:
            hi = mid - 1
        else:
            best, lo = found[0], found[0] + 1
    return best


# --- shared snapshots --------------------------------------------------------------------


async def snapshot_store(js: JetStreamContext, replicas: int) -> ObjectStore:
    """The object store of snapshots, created on first use."""
    try:
        return await js.object_store(SNAPSHOT_OBJECTS)
    except NotFoundError:
        config = js_api.ObjectStoreConfig(bucket=SNAPSHOT_OBJECTS, replicas=replicas, storage=js_api.StorageType.FILE)
        return await js.create_object_store(SNAPSHOT_OBJECTS, config=config)


async def put_snapshot(js: JetStreamContext, replicas: int, name: str, blob: bytes) -> None:
    store = await snapshot_store(js, replicas)
    await store.put(name, blob)


async def get_snapshot(js: JetStreamContext, replicas: int, name: str) -> bytes | None:
    store = await snapshot_store(js, replicas)
    try:
        result = await store.get(name)
    except NotFoundError:  # ObjectNotFoundError, ObjectDeletedError too
        return None
    return bytes(result.data) if result.data is not None else None


# --- usage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamUsage:
    stream: str
    bytes: int
    messages: int
    max_bytes: int  # 0: unbounded
    max_age: float

    @property
    def headroom(self) -> float | None:
        """Free fraction of ``max_bytes`` (None when unbounded)."""
        return None if not self.max_bytes else max(0.0, 1 - self.bytes / self.max_bytes)


async def usage(js: JetStreamContext, settings: Settings, streams: Sequence[str] = ()) -> list[StreamUsage]:
    out = []
    for name in streams or [spec.name for spec in STREAMS]:
        try:
            state = (await js.stream_info(name)).state
        except NotFoundError:
            continue
        limits = settings.streams.of(name)
        out.append(
            StreamUsage(name, int(state.bytes), int(state.messages), int(limits.max_bytes), float(limits.max_age))
        )
    return out
