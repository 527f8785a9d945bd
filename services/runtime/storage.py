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


async def compaction_due(
    js: JetStreamContext, settings: Settings, stream: str, subject: str, covered: int, now: float | None = None
) -> str:
    """Why ``subject`` of ``stream`` may be purged up to ``covered`` now ("" if not):
    the snapshot covering it is shared and every durable reading the subject acked
    it (the safe point reaches ``covered``), and the stream holds ``storage.compact_at``
    of its ``max_bytes`` ("bytes") or the message at ``covered`` is older than
    ``max_age`` ("age"). The purge is always to exactly a snapshot's position, so
    that snapshot plus the retained log rebuild the state (`vigil replay`)."""
    limits = settings.streams.of(stream)
    if covered <= 0 or (not limits.max_bytes and not limits.max_age):
        return ""
    if await safe_point(js, stream, subject, covered) < covered:
        return ""  # a durable (running or stopped) has not acknowledged it: it stays
    info = await js.stream_info(stream)
    if limits.max_bytes and info.state.bytes >= settings.storage.compact_at * limits.max_bytes:
        return "bytes"
    if limits.max_age:
        # ``covered`` is the seq of a message of ``subject`` (a position); older than max_age, all below it is
        found = await _stored_at(js, stream, subject, covered)
        cutoff = (time.time() if now is None else now) - float(limits.max_age)
        if found is not None and found[0] == covered and found[1] < cutoff:
            return "age"
    return ""


async def purge_upto(js: JetStreamContext, stream: str, subject: str, upto: int) -> int:
    """Remove the messages of ``subject`` with seq <= ``upto``; returns how many went."""
    before = await _subject_count(js, stream, subject)
    await js.purge_stream(stream, subject=subject, seq=upto + 1)  # purges seq < upto + 1
    purged = before - await _subject_count(js, stream, subject)
    if purged:
        log.info("%s %s: purged %d messages up to seq %d", stream, subject, purged, upto)
    return purged


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


async def room_before_compaction(js: JetStreamContext, settings: Settings, stream: str = "EVENTS") -> int | None:
    """Bytes ``stream`` takes before it holds ``storage.compact_at`` of its ``max_bytes``
    (negative past it; None when it is unbounded): how far a publisher may pipeline."""
    limits = settings.streams.of(stream)
    if not limits.max_bytes:
        return None
    stored = int((await js.stream_info(stream)).state.bytes)
    return int(settings.storage.compact_at * limits.max_bytes) - stored


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
