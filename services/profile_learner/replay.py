"""Rebuilding the learner's state from the log (catch-up at start, `vigil replay`).

Events (EVENTS) and commands (COMMANDS) come on two streams, so their live
interleaving is not in either stream. The learner records it: for every
command it applies it publishes a :class:`CommandApplied` marker on
:data:`MARKER_SUBJECT` saying "applied right after EVENTS sequence N".
:func:`merge` replays commands at exactly those points, so a rebuild gives
the state the live learner had, byte for byte. Rebuilding publishes nothing:
everything at or below a consumer's ack floor already had its outputs stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext

from contracts.codec import ContractError, decode_batch, decode_json
from contracts.profiles import CommandApplied
from contracts.subjects import COMMANDS, EVENTS, PROFILES, commands_filter, events_subject
from services.profile_learner import core
from services.runtime.log import last_seq, read_range

MARKER_SUBJECT = "vigil.profiles._applied"  # inside the PROFILES stream's vigil.profiles.*


@dataclass
class Rebuilt:
    events_messages: int = 0
    commands: int = 0
    undecodable: int = 0


class Interleaver:
    """Releases logged commands at the EVENTS positions their markers recorded."""

    def __init__(self, commands: Iterable[tuple[int, bytes]], markers: dict[int, int]) -> None:
        self._pending = sorted(commands)
        self._markers = markers
        self._i = 0

    def due_before(self, events_seq: int) -> list[tuple[int, bytes]]:
        start = self._i
        while self._i < len(self._pending) and self._markers.get(self._pending[self._i][0], 0) < events_seq:
            self._i += 1
        return self._pending[start : self._i]

    def rest(self) -> list[tuple[int, bytes]]:
        start, self._i = self._i, len(self._pending)
        return self._pending[start:]


def merge(
    events: Iterable[tuple[int, bytes]], commands: Iterable[tuple[int, bytes]], markers: dict[int, int]
) -> Iterator[tuple[str, int, bytes]]:
    """Yield ("EVENTS"|"COMMANDS", seq, data) in the order the live learner applied them."""
    inter = Interleaver(commands, markers)
    for seq, data in events:
        for cseq, cdata in inter.due_before(seq):
            yield COMMANDS, cseq, cdata
        yield EVENTS, seq, data
    for cseq, cdata in inter.rest():
        yield COMMANDS, cseq, cdata


def apply(state: core.State, cfg: core.Config, stream: str, data: bytes, stats: Rebuilt) -> None:
    """Apply one logged message to the state, dropping outputs; undecodable input changes nothing."""
    try:
        if stream == EVENTS:
            core.apply_batch(state, cfg, decode_batch(data))
            stats.events_messages += 1
        else:
            core.apply_command(state, cfg, decode_json("command", data))
            stats.commands += 1
    except ContractError:
        stats.undecodable += 1


def rebuild(
    state: core.State,
    cfg: core.Config,
    events: Iterable[tuple[int, bytes]],
    commands: Iterable[tuple[int, bytes]],
    markers: dict[int, int],
) -> Rebuilt:
    stats = Rebuilt()
    for stream, _seq, data in merge(events, commands, markers):
        apply(state, cfg, stream, data, stats)
    return stats


async def read_markers(js: JetStreamContext) -> dict[int, int]:
    """COMMANDS sequence -> EVENTS sequence it was applied after."""
    dec = msgspec.json.Decoder(CommandApplied)
    markers: dict[int, int] = {}
    async for _seq, _subject, data in read_range(js, PROFILES, 1, await last_seq(js, PROFILES), (MARKER_SUBJECT,)):
        try:
            m = dec.decode(data)
        except msgspec.ValidationError:
            continue
        markers[m.command_seq] = m.events_seq
    return markers


async def _events(
    js: JetStreamContext, after: int, upto: int, partition: int, archived: Sequence[tuple[int, bytes]]
) -> AsyncIterator[tuple[int, bytes]]:
    """One partition's EVENTS messages after ``after`` up to ``upto``: the archive's, then the log's."""
    for seq, data in archived:
        if after < seq <= upto:
            yield seq, data
            after = seq
    async for seq, _subject, data in read_range(js, EVENTS, after + 1, upto, (events_subject(partition),)):
        yield seq, data


async def rebuild_from_log(
    js: JetStreamContext,
    state: core.State,
    cfg: core.Config,
    positions: dict[str, int],
    upto: dict[str, int],
    partition: int,
    archived: Sequence[tuple[int, bytes]] = (),
) -> Rebuilt:
    """Apply one partition's EVENTS and COMMANDS messages after ``positions`` up to
    ``upto`` (inclusive, stream sequences) to ``state``. ``archived`` (seq, batch) are
    EVENTS messages from the Parquet archive, applied before the log's (which resumes
    after the last of them)."""
    markers = await read_markers(js) if upto.get(COMMANDS, 0) > positions.get(COMMANDS, 0) else {}
    first_command = positions.get(COMMANDS, 0) + 1
    command_filter = (commands_filter(partition),)
    commands = [
        (seq, data)
        async for seq, _, data in read_range(js, COMMANDS, first_command, upto.get(COMMANDS, 0), command_filter)
    ]
    inter = Interleaver(commands, markers)
    stats = Rebuilt()
    async for seq, data in _events(js, positions.get(EVENTS, 0), upto.get(EVENTS, 0), partition, archived):
        for _cseq, cdata in inter.due_before(seq):
            apply(state, cfg, COMMANDS, cdata, stats)
        apply(state, cfg, EVENTS, data, stats)
    for _cseq, cdata in inter.rest():
        apply(state, cfg, COMMANDS, cdata, stats)
    return stats
