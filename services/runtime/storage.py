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
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from contracts.codec import encode_json
from contracts.decisions import Decision
from contracts.subjects import SNAPSHOT_BUCKET, SNAPSHOT_OBJECTS, STREAMS, decisions_subject, subject_matches
from services.runtime.bus import Bus, publish_one
from services.runtime.errors import VigilError
from services.runtime.settings import Settings

log = logging.getLogger("vigil.storage")


# --- the safe point ----------------------------------------------------------------


def covers(config: js_api.ConsumerConfig, subject: str) -> bool:
    """Whether a consumer with this configuration reads ``subject``."""
    filters = list(config.filter_subjects or ()) + ([config.filter_subject] if config.filter_subject else [])
    return not filters or any(subject_matches(f, subject) for f in filters)


async def durables_floor(js: JetStreamContext, stream: str, subject: str) -> int | None:
    """The lowest ack floor (stream sequence) of the durable consumers of ``stream`` that
    read ``subject``; None when there is none (then nothing is known to be consumed)."""
    floors = [
        int(info.ack_floor.stream_seq) if info.ack_floor else 0
        for info in await js.consumers_info(stream)
        if info.config.durable_name and covers(info.config, subject)
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


class PurgeError(VigilError):
    """JetStream refused a purge."""


async def purge_upto(nc: Client, stream: str, subject: str, upto: int) -> int:
    """Remove the messages of ``subject`` with seq <= ``upto``; returns how many went (JetStream's
    own count: nats-py's ``purge_stream`` returns only a flag, and counting around it races
    with the publishers)."""
    request = msgspec.json.encode({"filter": subject, "seq": upto + 1})  # purges seq < upto + 1
    reply = await nc.request(f"$JS.API.STREAM.PURGE.{stream}", request, timeout=10)
    answer = msgspec.json.decode(reply.data)
    if not isinstance(answer, dict) or answer.get("error") or not answer.get("success"):
        raise PurgeError(f"purge of {stream} {subject} up to {upto} refused: {answer}")
    purged = int(answer.get("purged", 0))
    if purged:
        log.info("%s %s: purged %d messages up to seq %d", stream, subject, purged, upto)
    return purged


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


# --- saying it before it hurts: one decision per headroom crossing ----------------------------

STORAGE_SOURCE = "vigil"
STORAGE_SUBJECT = decisions_subject(STORAGE_SOURCE)


class HeadroomState(msgspec.Struct, frozen=True):
    """Per stream, in the ``vigil_snapshots`` bucket (``storage.<STREAM>``): below the threshold or
    not, how many crossings there were (the decision ids count them), and whether the last
    one's decision is published (``since``: when it was claimed, wall-clock ns)."""

    low: bool = False
    crossings: int = 0
    published: bool = True
    since: int = 0


_state_dec = msgspec.json.Decoder(HeadroomState)


def crossing(
    state: HeadroomState, used: StreamUsage, threshold: float, now_ns: int
) -> tuple[HeadroomState, Decision | None]:
    """The new state and the decision to publish when the stream's headroom crossed ``threshold``
    (down: ``warn``; back up: ``recovered``); None when nothing crossed."""
    low = used.headroom is not None and used.headroom < threshold
    if low == state.low:
        return state, None
    new = HeadroomState(low=low, crossings=state.crossings + 1, published=False, since=now_ns)
    return new, announcement(new, used, threshold)


def announcement(state: HeadroomState, used: StreamUsage, threshold: float) -> Decision:
    """The decision of a stream's latest crossing (``state``), with the usage seen now."""
    pct = f"{100 * (used.headroom or 0):.1f}%"
    return Decision(
        id=f"storage:{used.stream}:{state.crossings}",
        time=state.since,
        source=STORAGE_SOURCE,
        event_type="storage",
        action="warn" if state.low else "recovered",
        rule=f"streams.{used.stream.lower()}.max_bytes",
        severity="high" if state.low else "info",
        resource_kind="stream",
        resource_name=used.stream,
        message=(
            f"stream {used.stream}: {used.bytes} of {used.max_bytes} bytes, headroom {pct} "
            + (f"below {100 * threshold:g}%" if state.low else f"back above {100 * threshold:g}%")
        ),
        details={
            "bytes": used.bytes,
            "max_bytes": used.max_bytes,
            "messages": used.messages,
            "headroom": used.headroom,
        },
    )


async def check_headroom(bus: Bus, streams: Sequence[str] = (), stale_s: float = 10.0) -> list[Decision]:
    """Publish one storage decision per crossing of ``storage.headroom_warning``, whoever
    (and however many) call this. A crossing is first *claimed* by compare-and-set of the
    stream's state, and only the claimer publishes; it then marks the state published. A
    claim left unpublished longer than ``stale_s`` (its claimer died) is published by the
    next observer, under the same id (JetStream drops a duplicate), so none is lost."""
    kv = await bus.js.key_value(SNAPSHOT_BUCKET)
    published = []
    now = time.time_ns()
    for used in await usage(bus.js, bus.settings, streams):
        key = f"storage.{used.stream}"
        try:
            entry = await kv.get(key)
            state, revision = _state_dec.decode(entry.value or b"{}"), entry.revision
        except NotFoundError:  # KeyNotFoundError
            state, revision = HeadroomState(), None
        if not state.published and now - state.since < stale_s * 1e9:
            continue  # claimed by another observer, being published
        if state.published:
            state, decision = crossing(state, used, bus.settings.storage.headroom_warning, now)
            if decision is None:
                continue
            revision = await _swap(kv, key, state, revision)  # the claim
            if revision is None:
                continue  # another observer claimed this crossing
        else:
            decision = announcement(state, used, bus.settings.storage.headroom_warning)  # its claimer died
        await publish_one(bus, STORAGE_SUBJECT, encode_json(decision), decision.id)
        await _swap(kv, key, msgspec.structs.replace(state, published=True), revision)
        published.append(decision)
        log.warning("%s", decision.message)
    return published


async def _swap(kv: Any, key: str, state: HeadroomState, revision: int | None) -> int | None:
    """Compare-and-set; the new revision, or None when somebody else wrote the key first."""
    value = msgspec.json.encode(state)
    try:
        return int(await (kv.create(key, value) if revision is None else kv.update(key, value, last=revision)))
    except Exception:  # noqa: BLE001 - KeyWrongLastSequenceError / key exists: another observer won
        return None
