"""profile-learner adapter: EVENTS + COMMANDS in, PROFILES + DRIFT out, snapshots, a query endpoint.

Invariants:
- ``handle`` is synchronous, so the two consumer loops never interleave inside
  the core; a command's position relative to events is recorded by a
  CommandApplied marker (see :mod:`services.profile_learner.replay`).
- A snapshot (state + the stream sequences it reflects) is written only when
  every handled input's outputs were flushed (no stream "dirty"), at most
  every ``snapshot_interval`` wall-clock seconds (an adapter concern; the core
  never reads a clock) and at stop. It is a file under ``data_dir``, written
  atomically.
- At start: load the snapshot, then rebuild silently (no outputs: they are
  stored already) from the log up to each durable consumer's ack floor, so a
  crash between snapshots loses nothing; the runner (``stateful``) then
  recreates the durables to deliver from just after that position, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from contracts.codec import ContractError, decode_batch, decode_json, encode_batch, encode_json
from contracts.events import EVENT_TYPES
from contracts.profiles import CommandApplied, DriftBatch, ProfileEvent
from contracts.subjects import COMMANDS, EVENTS, QUERY_PROFILES, ConsumerSpec, drift_subject, profiles_subject
from services.profile_learner import core, replay
from services.runtime.bus import Bus
from services.runtime.files import write_atomically
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing
from services.runtime.settings import Settings

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
    enabled = tuple(t for t in EVENT_TYPES if getattr(rsc.event_types, t) and (t not in ("connect", "dns") or rsc.network.enabled))
    if not (rsc.enabled and sp.enabled):
        enabled = ()  # profiles off: versions are tracked, nothing is learned or reported
    return core.Config(
        stable_period={t: getattr(ad.minimum_stable_period, t).ns for t in EVENT_TYPES},
        warmup_period=ad.workload_warmup_period.ns,
        unstable_time=ad.unstable_profile_time_threshold.ns,
        size_threshold=ad.unstable_profile_size_threshold,
        dns_depth=sp.dns_match_max_depth,
        max_profiles=sp.max_profiles_in_memory,
        event_types=enabled,
    )


def snapshot_path(settings: Settings) -> Path:
    return settings.data_path / "profile-learner" / "snapshot.msgpack"


def load_snapshot(path: Path) -> Snapshot | None:
    try:
        return _snap_decoder.decode(path.read_bytes())
    except FileNotFoundError:
        return None


class ProfileLearner(AppBase):
    name = "profile-learner"
    # The app owns its positions: the runner recreates the durables to deliver from position + 1,
    # in order (the state depends on order), and skips what is at or below them.
    stateful = True
    consumers = (ConsumerSpec(EVENTS, "profile-learner"), ConsumerSpec(COMMANDS, "profile-learner-commands"))

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.cfg = core_config(settings)
        self.state = core.State()
        self.handled: dict[str, int] = {}
        self.dirty: set[str] = set()
        self.path = snapshot_path(settings)
        self.interval = float(settings.runtime_security_config.security_profile.snapshot_interval)
        self._last_snapshot = 0.0
        self._sub: Any = None
        self._durable_stream = {f"{self.name}:{c.durable}": c.stream for c in self.consumers}

    # --- life-cycle ---
    async def start(self, bus: Bus) -> None:
        snap = load_snapshot(self.path)
        if snap is not None:
            self.state, self.handled = snap.state, dict(snap.positions)
        floors = await self._ack_floors(bus)
        upto = {s: max(floors.get(s, 0), self.handled.get(s, 0)) for s in (EVENTS, COMMANDS)}
        if any(upto[s] > self.handled.get(s, 0) for s in upto):
            stats = await replay.rebuild_from_log(bus.js, self.state, self.cfg, self.handled, upto)
            self.counters["caught_up_messages"] += stats.events_messages + stats.commands
            log.info("caught up from the log to %s (%s)", upto, stats)
        self.handled = {s: v for s, v in upto.items() if v}
        self.positions.update(self.handled)
        self._sub = await bus.nc.subscribe(QUERY_PROFILES, cb=self._on_query)

    async def _ack_floors(self, bus: Bus) -> dict[str, int]:
        floors: dict[str, int] = {}
        for spec in self.consumers:
            try:
                info = await bus.js.consumer_info(spec.stream, spec.durable)
            except Exception:  # noqa: BLE001 - no consumer yet: nothing acked
                continue
            floors[spec.stream] = info.ack_floor.stream_seq if info.ack_floor else 0
        return floors

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection already gone
                pass
        self._snapshot(force=True)

    # --- inputs ---
    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        outs = self._events(msg) if msg.stream == EVENTS else self._command(msg)
        self.handled[msg.stream] = msg.seq
        self.dirty.add(msg.stream)
        return outs

    def _events(self, msg: Incoming) -> list[Outgoing]:
        try:
            batch = decode_batch(msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        evs, drift = core.apply_batch(self.state, self.cfg, batch)
        self.counters["events"] += len(batch.events)
        outs = _profile_outs(evs)
        if drift is not None:
            outs.append(_drift_out(batch.partition, drift, msg.id))
            self.counters["drifts"] += len(drift.drifts)
        return outs

    def _command(self, msg: Incoming) -> list[Outgoing]:
        try:
            cmd = decode_json("command", msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        evs = core.apply_command(self.state, self.cfg, cmd)
        prof = self.state.profiles.get(cmd.image_name)
        marker = CommandApplied(
            id=f"pl:{cmd.id}:applied",
            time=cmd.time or (prof.now if prof else self.state.now),
            image_name=cmd.image_name,
            command_id=cmd.id,
            command_seq=msg.seq,
            events_seq=self.handled.get(EVENTS, 0),
        )
        self.counters["commands"] += 1
        return [*_profile_outs(evs), Outgoing(replay.MARKER_SUBJECT, encode_json(marker), id=marker.id)]

    # --- durability ---
    async def commit(self) -> None:
        task = asyncio.current_task()
        stream = self._durable_stream.get(task.get_name()) if task else None
        if stream is not None:
            self.dirty.discard(stream)  # the runner flushed this loop's outputs before calling commit
        self._snapshot()

    def _snapshot(self, force: bool = False) -> None:
        if self.dirty or not self.handled:
            return
        now = time.monotonic()
        if not force and now - self._last_snapshot < self.interval:
            return
        self._last_snapshot = now
        write_atomically(self.path, _snap_encoder.encode(Snapshot(positions=dict(self.handled), state=self.state)))
        self.counters["snapshots"] += 1

    # --- the read endpoint ---
    async def _on_query(self, msg: Any) -> None:
        try:
            req = msgspec.json.decode(msg.data or b"{}")
        except msgspec.DecodeError:
            req = {}
        await msg.respond(encode_json(self.query(req.get("image") if isinstance(req, dict) else None)))

    def query(self, image: str | None) -> dict[str, Any]:
        if image is not None:
            prof = self.state.profiles.get(image)
            return {"profile": core.summary(prof) if prof else None}
        return {
            "profiles": [core.summary(p) for p in self.state.profiles.values()],
            "over_cap_events": self.state.over_cap_events,
            "positions": dict(self.handled),
        }


def _profile_outs(evs: list[ProfileEvent]) -> list[Outgoing]:
    return [Outgoing(profiles_subject(e.image_name), encode_json(e), id=e.id) for e in evs]


def _drift_out(partition: int, drift: DriftBatch, input_id: str) -> Outgoing:
    return Outgoing(drift_subject(partition), encode_batch(drift), id=f"drift:{input_id}")


def build(settings: Settings) -> ProfileLearner:
    return ProfileLearner(settings)
