"""profile-learner adapter: EVENTS + COMMANDS in, PROFILES + DRIFT out, snapshots, a query endpoint.

The learner's state is kept **per partition** (an image's events and commands
all travel on its partition), so instances can split the partitions between
them (the runner's partition leases) and the outputs are the same whatever the
number of instances: each partition's outputs are a function of that
partition's input alone.

Invariants, per partition:
- ``handle`` is synchronous, so the two consumer loops never interleave inside
  the core; a command's position relative to the partition's events is
  recorded by a CommandApplied marker (see :mod:`services.profile_learner.replay`).
- A snapshot (state + the stream sequences it reflects) is written only when
  every handled input's outputs were flushed (nothing "dirty"), at most every
  ``snapshot_interval`` wall-clock seconds (an adapter concern; the core never
  reads a clock) and when the partition is given up. It is a file under
  ``data_dir``, written atomically, and the same bytes in the shared object store
  (``vigil_snapshot_objects``), so a learner on any host can take the partition
  over from it.
- After a shared snapshot, the partition's EVENTS subject is compacted below its
  safe point (acked by every durable reading it, and covered by that snapshot):
  see :mod:`services.runtime.storage`. A head purged that way is never needed
  again: a taker starts from the shared snapshot, which covers it.
- A caught-up partition (its EVENTS consumer idle) still snapshots and compacts
  until the log's head is purged to where it stands: a full EVENTS refuses the
  collector's next batch, so no new input would ever trigger that compaction.
- When a partition becomes ours: load its snapshot, then rebuild silently (no
  outputs: they are stored already) from the log up to its durable consumers'
  ack floors, so a crash between snapshots loses nothing; the runner then
  recreates those durables to deliver from just after that position, in order.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from contracts.codec import ContractError, decode_batch, decode_json, encode_batch, encode_json
from contracts.events import EVENT_TYPES
from contracts.profiles import CommandApplied, DriftBatch, ProfileEvent
from contracts.subjects import (
    COMMANDS,
    EVENTS,
    ConsumerSpec,
    commands_filter,
    drift_subject,
    events_subject,
    profiles_subject,
    query_profiles_subject,
    subject_partition,
)
from services.profile_learner import core, replay
from services.runtime.bus import Bus, data_path, unsubscribe_quietly
from services.runtime.event_archive import archive_range
from services.runtime.files import write_atomically
from services.runtime.log import ack_floor
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing, current_consumer
from services.runtime.settings import Settings
from services.runtime.storage import check_headroom, compaction_due, get_snapshot, purge_upto, put_snapshot

log = logging.getLogger("vigil.profile-learner")


class Snapshot(msgspec.Struct, kw_only=True):
    positions: dict[str, int]
    state: core.State


_snap_encoder = msgspec.msgpack.Encoder()
_snap_decoder = msgspec.msgpack.Decoder(Snapshot)


def core_config(settings: Settings) -> core.Config:
    rsc = settings.runtime_security_config
    sp = rsc.security_profile
    ad = sp.anomaly_detection
    enabled = tuple(
        t for t in EVENT_TYPES if getattr(rsc.event_types, t) and (t not in ("connect", "dns") or rsc.network.enabled)
    )
    if not (rsc.enabled and sp.enabled):
        enabled = ()  # profiles off: versions are tracked, nothing is learned or reported
    return core.Config(
        stable_period={t: getattr(ad.minimum_stable_period, t).ns for t in EVENT_TYPES},
        warmup_period=ad.workload_warmup_period.ns,
        unstable_time=ad.unstable_profile_time_threshold.ns,
        size_threshold=ad.unstable_profile_size_threshold,
        dns_depth=sp.dns_match_max_depth,
        # the cap is shared out between the partitions: each keeps its own profiles
        max_profiles=math.ceil(sp.max_profiles_in_memory / settings.nats.partitions),
        event_types=enabled,
    )


def snapshot_dir(settings: Settings) -> Path:
    return settings.data_path / "profile-learner"


def snapshot_path(settings: Settings, partition: int) -> Path:
    return snapshot_dir(settings) / f"partition-{partition}.msgpack"


def load_snapshot(path: Path) -> Snapshot | None:
    try:
        return _snap_decoder.decode(path.read_bytes())
    except FileNotFoundError:
        return None


def shared_snapshot_name(partition: int, base: bool = False) -> str:
    """The partition's latest shared snapshot, or its *base*: the one the log's head was purged to."""
    return f"profile-learner/partition-{partition}" + (".base" if base else "")


def newest(*snaps: Snapshot | None) -> Snapshot | None:
    """The snapshot that reflects most of the log (the local file or the shared copy)."""
    found = [s for s in snaps if s is not None]
    return max(found, key=lambda s: (s.positions.get(EVENTS, 0), s.positions.get(COMMANDS, 0)), default=None)


def load_snapshots(settings: Settings) -> dict[int, Snapshot]:
    """Every partition's snapshot on this host (for the CLI when no learner answers)."""
    out = {}
    for p in range(settings.nats.partitions):
        snap = load_snapshot(snapshot_path(settings, p))
        if snap is not None:
            out[p] = snap
    return out


async def latest_snapshot(js: Any, settings: Settings, partition: int, local: Snapshot | None) -> Snapshot | None:
    """The partition's newest snapshot: this host's file (``local``) or the shared copy."""
    shared = await get_snapshot(js, settings.nats.replicas, shared_snapshot_name(partition))
    return newest(local, _snap_decoder.decode(shared) if shared else None)


async def shared_snapshots(
    js: Any, settings: Settings, local: dict[int, Snapshot]
) -> tuple[dict[int, Snapshot], dict[int, Snapshot]]:
    """Every partition's newest snapshot (this host's file or the shared copy) and its
    shared base snapshot (where compaction purged the log's head to), when there is one."""
    latest, bases = dict(local), {}
    for p in range(settings.nats.partitions):
        found = await latest_snapshot(js, settings, p, local.get(p))
        if found is not None:
            latest[p] = found
        base = await get_snapshot(js, settings.nats.replicas, shared_snapshot_name(p, base=True))
        if base is not None:
            bases[p] = _snap_decoder.decode(base)
    return latest, bases


def partition_consumers(partition: int) -> tuple[ConsumerSpec, ConsumerSpec]:
    return (
        ConsumerSpec(EVENTS, f"profile-learner-p{partition}", (events_subject(partition),), partition=partition),
        ConsumerSpec(
            COMMANDS, f"profile-learner-commands-p{partition}", (commands_filter(partition),), partition=partition
        ),
    )


class Partition:
    """One partition's learner: its state and the positions it reflects."""

    def __init__(self, number: int, state: core.State, handled: dict[str, int]) -> None:
        self.number = number
        self.state = state
        self.handled = handled  # EVENTS / COMMANDS -> last stream sequence applied
        self.dirty: set[str] = set()
        self.last_snapshot = 0.0
        self.sub: Any = None
        # the previous shared snapshot and the EVENTS position it covers: its inputs are
        # acked by now (this one's are not yet), so it is the one compaction purges to
        self.shared: tuple[bytes, int] | None = None
        self.compacted = 0  # the EVENTS position the log's head was last purged to (by this learner)
        self.compaction_checked = 0.0


class ProfileLearner(AppBase):
    name = "profile-learner"
    # The app owns its positions: the runner recreates the durables to deliver from position + 1,
    # in order (the state depends on order), and skips what is at or below them.
    stateful = True
    partitioned = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.cfg = core_config(settings)
        self.parts: dict[int, Partition] = {}
        self.interval = float(settings.runtime_security_config.security_profile.snapshot_interval)
        self._bus: Bus | None = None
        self._headroom_checked = 0.0

    def partition_consumers(self, partition: int) -> tuple[ConsumerSpec, ...]:
        return partition_consumers(partition)

    # --- life-cycle ---
    async def start(self, bus: Bus) -> None:
        self._bus = bus

    async def assign(self, partition: int) -> None:
        assert self._bus is not None, "start() first"
        js = self._bus.js
        snap = await latest_snapshot(
            js, self.settings, partition, load_snapshot(snapshot_path(self.settings, partition))
        )
        state, handled = (snap.state, dict(snap.positions)) if snap else (core.State(), {})
        specs = partition_consumers(partition)
        floors = {spec.stream: await ack_floor(js, spec.stream, spec.durable) for spec in specs}
        upto = {s: max(floors.get(s, 0), handled.get(s, 0)) for s in (EVENTS, COMMANDS)}
        if any(upto[s] > handled.get(s, 0) for s in upto):
            # (the log reader misses nothing up to ``upto``, or raises: the partition is then retried)
            stats = await replay.rebuild_from_log(js, state, self.cfg, handled, upto, partition)
            self.counters["caught_up_messages"] += stats.events_messages + stats.commands
            log.info("partition %d: caught up from the log to %s (%s)", partition, upto, stats)
        part = Partition(partition, state, {s: v for s, v in upto.items() if v})
        for spec in specs:
            if spec.stream in part.handled:
                self.positions[spec.position_key] = part.handled[spec.stream]
        part.sub = await self._bus.nc.subscribe(query_profiles_subject(partition), cb=self._on_query)
        self.parts[partition] = part

    async def revoke(self, partition: int) -> None:
        part = self.parts.pop(partition, None)
        if part is None:
            return
        await unsubscribe_quietly(part.sub)
        blob = self._snapshot(part, force=True)
        if blob is not None:
            await self._share(part.number, blob, compact_after=False)
        for spec in partition_consumers(partition):
            self.positions.pop(spec.position_key, None)

    async def stop(self) -> None:
        for partition in list(self.parts):  # the runner revoked them already; this is for direct use
            await self.revoke(partition)

    # --- inputs ---
    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            part = self.parts[subject_partition(msg.subject)]
        except (KeyError, ValueError, IndexError) as exc:
            raise Invalid(f"not on a partition this learner owns: {msg.subject}") from exc
        outs = self._events(part, msg) if msg.stream == EVENTS else self._command(part, msg)
        part.handled[msg.stream] = msg.seq
        part.dirty.add(msg.stream)
        return outs

    def _events(self, part: Partition, msg: Incoming) -> list[Outgoing]:
        try:
            batch = decode_batch(msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        evs, drift = core.apply_batch(part.state, self.cfg, batch)
        self.counters["events"] += len(batch.events)
        outs = _profile_outs(evs)
        if drift is not None:
            outs.append(_drift_out(batch.partition, drift, msg.id))
            self.counters["drifts"] += len(drift.drifts)
        return outs

    def _command(self, part: Partition, msg: Incoming) -> list[Outgoing]:
        try:
            cmd = decode_json("command", msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        evs = core.apply_command(part.state, self.cfg, cmd)
        prof = part.state.profiles.get(cmd.image_name)
        marker = CommandApplied(
            id=f"pl:{cmd.id}:applied",
            time=cmd.time or (prof.now if prof else part.state.now),
            image_name=cmd.image_name,
            command_id=cmd.id,
            command_seq=msg.seq,
            events_seq=part.handled.get(EVENTS, 0),
        )
        self.counters["commands"] += 1
        return [*_profile_outs(evs), Outgoing(replay.MARKER_SUBJECT, encode_json(marker), id=marker.id)]

    # --- durability ---
    async def commit(self) -> None:
        spec = current_consumer.get()
        if spec is None or spec.partition is None:
            return
        part = self.parts.get(spec.partition)
        if part is not None:
            part.dirty.discard(spec.stream)  # the runner flushed this consumer's outputs before calling commit
            blob = self._snapshot(part)
            if blob is not None:
                await self._share(spec.partition, blob)

    async def idle(self) -> Sequence[Outgoing]:
        """Nothing came for a partition's EVENTS consumer: everything it handled is acked
        by now. The snapshot that covers it, when due, and a compaction to the shared one
        (whose inputs are acked): the log may be full, waiting for exactly that."""
        spec = current_consumer.get()
        part = self.parts.get(spec.partition) if spec and spec.stream == EVENTS and spec.partition is not None else None
        if part is None or part.dirty:
            return ()
        if part.shared is None or part.shared[1] < part.handled.get(EVENTS, 0):
            await self.commit()  # a new shared snapshot (when due), and compaction to the previous one
        elif part.compacted < part.shared[1] and time.monotonic() - part.compaction_checked >= self.interval:
            part.compaction_checked = time.monotonic()
            try:
                await self._compact(part, *part.shared)
            except Exception as exc:  # noqa: BLE001 - as _share's: retried at the next idle moment
                self.counters["storage_errors"] += 1
                log.warning("partition %d: compaction failed: %s", part.number, exc)
        return ()

    def _snapshot(self, part: Partition, force: bool = False) -> bytes | None:
        """Write the partition's snapshot file when one is due; returns its bytes."""
        if part.dirty or not part.handled:
            return None
        now = time.monotonic()
        if not force and now - part.last_snapshot < self.interval:
            return None
        part.last_snapshot = now
        blob = _snap_encoder.encode(Snapshot(positions=dict(part.handled), state=part.state))
        write_atomically(snapshot_path(self.settings, part.number), blob)
        self.counters["snapshots"] += 1
        return blob

    async def _share(self, partition: int, blob: bytes, compact_after: bool = True) -> None:
        """Store the snapshot where any host reads it, then compact the partition's EVENTS
        below what it covers. A failure costs only this round: the next snapshot retries."""
        assert self._bus is not None
        js, replicas = self._bus.js, self.settings.nats.replicas
        part = self.parts.get(partition)
        previous = part.shared if part else None
        covers = part.handled.get(EVENTS, 0) if part else 0  # what ``blob`` covers (read before any await)
        try:
            await put_snapshot(js, replicas, shared_snapshot_name(partition), blob)
            self.counters["shared_snapshots"] += 1
            if part is not None:
                part.shared = (blob, covers)
            if not compact_after:
                return
            if time.monotonic() - self._headroom_checked >= self.interval:
                self._headroom_checked = time.monotonic()
                decided = await check_headroom(self._bus)  # (awaited first: `x[k] += await …` loses updates)
                self.counters["storage_decisions"] += len(decided)
            # The runner acks a batch after this commit: the previous shared snapshot's inputs are the acked ones.
            if previous is not None and part is not None:
                await self._compact(part, *previous)
        except Exception as exc:  # noqa: BLE001 - the bus may be failing over; retried next snapshot
            self.counters["storage_errors"] += 1
            log.warning("partition %d: shared snapshot or compaction failed: %s", partition, exc)

    async def _compact(self, part: Partition, blob: bytes, covered: int) -> None:
        """Purge the partition's EVENTS up to ``covered`` (the position of the shared
        snapshot ``blob``) when that is due (:func:`compaction_due`)."""
        assert self._bus is not None
        js, replicas, subject = self._bus.js, self.settings.nats.replicas, events_subject(part.number)
        if not await compaction_due(js, self.settings, EVENTS, subject, covered):
            return
        # the base first: a purged head is always covered by a shared snapshot replay can start from
        await put_snapshot(js, replicas, shared_snapshot_name(part.number, base=True), blob)
        if self.settings.storage.archive_dir:  # and history goes to the archive before it leaves the log
            archive = data_path(self.settings, self.settings.storage.archive_dir)
            archived = await archive_range(js, archive, EVENTS, subject, part.number, covered)
            self.counters["archived_events_messages"] += archived
        purged = await purge_upto(self._bus.nc, EVENTS, subject, covered)
        self.counters["purged_events_messages"] += purged
        part.compacted = max(part.compacted, covered)

    # --- the read endpoint (one subject per owned partition) ---
    async def _on_query(self, msg: Any) -> None:
        try:
            req = msgspec.json.decode(msg.data or b"{}")
        except msgspec.DecodeError:
            req = {}
        image = req.get("image") if isinstance(req, dict) else None
        await msg.respond(encode_json(self.query(image, int(msg.subject.rsplit(".", 1)[1]))))

    def query(self, image: str | None, partition: int) -> dict[str, Any]:
        """One partition's answer (an image is asked on its own partition's subject)."""
        part = self.parts.get(partition)
        if image is not None:
            prof = part.state.profiles.get(image) if part else None
            return {"profile": core.summary(prof) if prof else None}
        return summaries([part] if part else [])


def summaries(parts: Sequence[Partition | Snapshot]) -> dict[str, Any]:
    """The answer to "every profile" for some partitions (live or from snapshots)."""
    return {
        "profiles": [core.summary(p) for part in parts for p in part.state.profiles.values()],
        "over_cap_events": sum(part.state.over_cap_events for part in parts),
    }


def _profile_outs(evs: list[ProfileEvent]) -> list[Outgoing]:
    return [Outgoing(profiles_subject(e.image_name), encode_json(e), id=e.id) for e in evs]


def _drift_out(partition: int, drift: DriftBatch, input_id: str) -> Outgoing:
    return Outgoing(drift_subject(partition), encode_batch(drift), id=f"drift:{input_id}")


def build(settings: Settings) -> ProfileLearner:
    return ProfileLearner(settings)


async def backlog(js: Any, partitions: int) -> int:
    """EVENTS messages the learner instances have not acked yet, over all partitions
    (a partition whose consumer does not exist yet counts its whole subject)."""
    pending = 0
    for p in range(partitions):
        spec = partition_consumers(p)[0]
        try:
            info = await js.consumer_info(spec.stream, spec.durable)
        except Exception:  # noqa: BLE001 - not created yet (nobody owns the partition)
            pending += await _subject_count(js, spec.filter_subjects[0])
            continue
        pending += info.num_pending + info.num_ack_pending
    return pending


async def _subject_count(js: Any, subject: str) -> int:
    info = await js.stream_info(EVENTS, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))
