"""Reading the log back: the catch-up of stateful services and `vigil replay`.

:func:`read_range` reads a stream like an ordered consumer: through ephemeral
consumers that ack nothing, and after a fetch times out (a slow or failing-over
cluster may have dropped a pull request and the messages in flight) a fresh
consumer starts again at the next sequence, so no message is missed. The read
ends at ``last`` or when nothing more is pending (confirmed by the stream
leader: an ephemeral consumer on a replica that is still catching up after a
restart would report too little); it raises
:class:`ReadError` rather than let state silently diverge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from services.runtime.bus import unsubscribe_quietly
from services.runtime.errors import VigilError

MAX_STALLS = 30


class ReadError(VigilError):
    """The log could not be read back (the state would silently diverge otherwise)."""


async def read_range(
    js: JetStreamContext, stream: str, first: int, last: int, subjects: Sequence[str] = ()
) -> AsyncIterator[tuple[int, str, bytes]]:
    """``(seq, subject, data)`` of ``stream`` (optionally only ``subjects``) with
    first <= seq <= last, in order, none missed."""
    async for msg in read_messages(js, stream, first, last, subjects):
        yield msg.metadata.sequence.stream, msg.subject, msg.data


async def read_messages(
    js: JetStreamContext, stream: str, first: int, last: int, subjects: Sequence[str] = ()
) -> AsyncIterator[Msg]:
    """The messages themselves (headers too) of :func:`read_range`."""
    next_seq, stalls = max(first, 1), 0
    while next_seq <= last:
        sub = await _ephemeral(js, stream, subjects, next_seq)
        try:
            if await _nothing_pending(sub) and not await stored_between(js, stream, subjects, next_seq, last):
                return
            while next_seq <= last:
                try:
                    msgs = await sub.fetch(1000, timeout=2.0)
                except Exception:  # noqa: BLE001 - nats TimeoutError: start a fresh consumer
                    break
                stalls = 0
                for m in msgs:
                    seq = m.metadata.sequence.stream
                    if seq < next_seq:
                        continue
                    if seq > last:
                        return
                    yield m
                    next_seq = seq + 1
                    # the consumer has nothing more: done, unless the stream leader knows better
                    # (an ephemeral consumer may sit on a replica still catching up after a restart)
                    if m.metadata.num_pending == 0 and not await stored_between(js, stream, subjects, next_seq, last):
                        return
        finally:
            await unsubscribe_quietly(sub)
        stalls += 1
        if stalls > MAX_STALLS:
            raise ReadError(f"{stream}: could not read from seq {next_seq} (to {last}) after {stalls} attempts")


async def stored_between(js: JetStreamContext, stream: str, subjects: Sequence[str], first: int, last: int) -> bool:
    """Whether the stream's leader holds a message matching ``subjects`` with first <= seq <= last
    (unsure, e.g. during a failover: True, so the reader keeps trying)."""
    if first > last:
        return False
    for subject in subjects or (">",):
        try:
            msg = await js.get_msg(stream, seq=first, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            continue
        except Exception:  # noqa: BLE001 - no leader right now: assume there is more
            return True
        if msg.seq is None or msg.seq <= last:
            return True
    return False


async def _ephemeral(
    js: JetStreamContext, stream: str, subjects: Sequence[str], start: int
) -> JetStreamContext.PullSubscription:
    filters = list(subjects)
    config = js_api.ConsumerConfig(
        deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=js_api.AckPolicy.NONE,
        inactive_threshold=30.0,
        filter_subjects=filters if len(filters) > 1 else None,
    )
    return await js.pull_subscribe(filters[0] if len(filters) == 1 else "", stream=stream, config=config)


async def _nothing_pending(sub: JetStreamContext.PullSubscription) -> bool:
    try:
        info = await sub.consumer_info()
    except Exception:  # noqa: BLE001 - unknown: keep reading
        return False
    return int(info.num_pending or 0) == 0


async def last_seq(js: JetStreamContext, stream: str) -> int:
    return int((await js.stream_info(stream)).state.last_seq)


async def ack_floor(js: JetStreamContext, stream: str, durable: str) -> int:
    """The durable consumer's ack floor (0 when it does not exist yet)."""
    try:
        info = await js.consumer_info(stream, durable)
    except Exception:  # noqa: BLE001 - no consumer yet: nothing acked
        return 0
    return int(info.ack_floor.stream_seq) if info.ack_floor else 0
