"""A pull-consumer fetch that takes a batch off the subscription's queue in one go.

nats-py's ``PullSubscription.fetch(batch)`` awaits every message of a batch
with its own ``next_msg`` (a task, a ``wait_for`` timer and a uuid each):
about 20 µs a message, a third of what a one-decision-per-message stream costs
the archiver (docs/decisions.md). :func:`fetch` speaks the same pull protocol
— drain what an earlier request left in the queue, then a ``no_wait`` request
for what is available, then, only if that found nothing, a lingering request
with ``expires`` — but waits once per round and takes the rest with
``get_nowait``.

Invariants (those of nats-py's fetch):

- at most ``batch`` messages are returned; messages the server delivers later
  (to a lingering request the caller did not wait for) stay in the queue and
  come first in the next call, so nothing delivered is dropped;
- status messages end a request (404 no messages, 408 expired, 409 conflict)
  or are skipped (100 heartbeats); any other status raises ``APIError``;
- nothing at all within ``timeout`` raises ``nats.errors.TimeoutError``.

It reads nats-py internals (``_sub._pending_queue``, ``_nms``, ``_deliver``),
pinned by ``nats-py>=2.16,<3``. Opt in per app with ``queue_fetch = True``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api

_HEARTBEAT = api.StatusCode.CONTROL_MESSAGE
_GRACE = 0.25  # s: how long after its expiry a lingering request's end status may take to arrive
_END = {api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT, api.StatusCode.CONFLICT}


def _take(sub: Any, msgs: list[Msg], batch: int, first: Msg | None = None) -> bool:
    """Move messages (``first``, then whatever is queued) into ``msgs`` up to ``batch``.
    Returns True when a status ended the request."""
    queue = sub._sub._pending_queue
    while len(msgs) < batch:
        if first is not None:
            msg, first = first, None
        elif queue.empty():
            return False
        else:
            msg = queue.get_nowait()
        queue.task_done()  # a drain (close) waits for every queued message to be done
        sub._sub._pending_size -= len(msg.data)
        status = msg.headers.get(api.Header.STATUS) if msg.headers else None
        if status is None:
            msgs.append(msg)
        elif status in _END:
            return True
        elif status != _HEARTBEAT:
            raise nats.js.errors.APIError.from_msg(msg)
    return False


async def fetch(sub: Any, batch: int, timeout: float, max_bytes: int = 0) -> list[Msg]:
    """Up to ``batch`` messages from a nats-py pull subscription (see the module docstring);
    with ``max_bytes`` each request also asks the server for at most that many bytes."""
    msgs: list[Msg] = []
    _take(sub, msgs, batch)  # left by an earlier lingering request
    if len(msgs) >= batch:
        return msgs
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    queue = sub._sub._pending_queue
    for linger in (False, True):
        request: dict[str, Any] = {"batch": batch - len(msgs)}
        if max_bytes > 0:
            request["max_bytes"] = max_bytes
        if linger:
            request["expires"] = int(max(0.001, deadline - loop.time()) * 1e9)
        else:
            request["no_wait"] = True
        await sub._nc.publish(sub._nms, json.dumps(request).encode(), sub._deliver)
        try:  # a lingering request ends with the server's 408 just before this wait does
            async with asyncio.timeout_at(deadline + (_GRACE if linger else 0)):
                while len(msgs) < batch:
                    ended = _take(sub, msgs, batch, await queue.get())
                    if ended or (linger and msgs):
                        break  # the request is over, or a lingering one brought something: return it
        except TimeoutError:
            pass
        if msgs:
            return msgs
    raise nats.errors.TimeoutError


async def batches_until(sub: Any, end: int, batch: int = 500, timeout: float = 1.0) -> AsyncIterator[list[Msg]]:
    """What a pull subscription delivers up to stream sequence ``end`` (the stream's last
    sequence when a reader started), batch by batch, then stop. A reader of stored
    history must not wait for the stream to run dry: on a live node it never does.
    Ends early when the consumer has nothing pending (its filter leaves nothing more up
    to ``end``) or nothing arrives within ``timeout`` (the stream was trimmed)."""
    while end > 0:
        try:
            msgs = list(await sub.fetch(batch, timeout=timeout))
        except TimeoutError:  # nats.errors.TimeoutError, or asyncio's from inside nats-py's fetch
            return
        if not msgs:
            return
        yield [m for m in msgs if m.metadata.sequence.stream <= end]
        last = msgs[-1].metadata
        if last.sequence.stream >= end or last.num_pending == 0:
            return
