"""The runner's input side: every service is fed by a FastStream JetStream batch
pull subscriber (docs/faststream.md).

FastStream does the framework's part: the connection (a ``NatsBroker``), the durable
pull consumer, the loop that fetches a batch and calls the handler with it
(``PullSub(batch=True)``), parsing, and graceful stop (a subscriber's ``stop`` waits
for the batch in hand, up to the broker's ``graceful_timeout``). When a batch is
done (at once, or after the app's ``fetch_linger``) and the idle moments are
:class:`_Fetch`'s. Vigil's guarantees stay in
:class:`services.runtime.service.Runner`, which the batch handler calls:

1. the handler receives the raw ``nats`` messages (a decoder that hands FastStream's
   batch through undecoded: apps decode their own contracts, once);
2. :meth:`Runner._process` gives outputs their deterministic ids, publishes them,
   waits for JetStream to store them, commits (snapshot, sink) and only then acks:
   FastStream never acks (``AckPolicy.MANUAL``);
3. an app that owns its position gets its durable deleted and declared again from
   position + 1 before the subscriber starts, so deliveries are numbered 1, 2, …;
   a jump (a pull lost in a failover) ends this subscriber after the in-order prefix
   and a new one starts from the position (the contiguity check of docs/runtime.md);
4. an error the runner would die of (a publish that never succeeds) is not left to
   FastStream's log-and-continue: it ends the consumer, and so the service.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import nats.errors
from fast_depends.msgspec import MsgSpecSerializer
from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.msg import Msg

from contracts.subjects import ConsumerSpec
from services.runtime.bus import (
    Publisher,
    connect_options,
    consumer_config,
    consumer_subject,
    delete_consumer,
    retry_transient,
)
from services.runtime.fetch import fetch as queue_fetch
from services.runtime.service import Runner, _in_order, _owns_position, current_consumer, fetch_failed
from services.runtime.settings import Settings

if TYPE_CHECKING:
    from faststream.nats.subscriber.usecases.basic import LogicSubscriber

log = logging.getLogger("vigil.service")
# FastStream's own log, in Vigil's format: its errors as they come, its INFO chatter (a line
# each time a subscriber task ends: "callback for Task-20 is being executed...") and its
# DEBUG access log (a line per batch) only when asked for
faststream_log = logging.getLogger("vigil.faststream")
faststream_log.setLevel(logging.WARNING)

IDLE_WAIT = 0.5  # s: one pull request's wait when nothing comes (the lean loop's)

Batch = Callable[[list[Msg]], Awaitable[None]]
Pull = Callable[[int, float, int], Awaitable[list[Msg]]]  # (batch, timeout, max_bytes) -> messages


def new_broker(servers: list[str], settings: Settings, name: str, graceful_timeout: float = 15.0) -> NatsBroker:
    """A NatsBroker with Vigil's connect options, logging to ``vigil.faststream``.
    ``graceful_timeout``: how long a stopping subscriber lets the batch in hand finish
    (a partition given up: a third of the lease; a service stopping: well within the
    supervisor's 20 s before SIGKILL). Cut short, the batch is redelivered unchanged."""
    return NatsBroker(
        servers,
        serializer=MsgSpecSerializer(),
        apply_types=False,  # the handler takes the raw batch: no dependency injection per call (~0.1 ms a batch)
        graceful_timeout=graceful_timeout,
        # no NatsTelemetryMiddleware: each input's span (a child of its traceparent) is the
        # runner's; FastStream's batch span on top cost 10-15 % of the detector's and the
        # throttler's CPU in bench.e2e (docs/faststream.md)
        logger=faststream_log,
        log_level=logging.DEBUG,
        **connect_options(settings, name),
    )


async def start_broker(runner: Runner) -> NatsBroker:
    """The runner's broker: the servers its bus knows (a cluster's too), connected and started."""
    app, settings = runner.app, runner.settings
    servers = [url.geturl() for url in runner.bus.nc.servers]
    graceful = float(settings.nats.lease_ttl) / 3 if app.partitioned else 15.0
    broker = new_broker(servers, settings, f"vigil-{app.name}-faststream", graceful)
    await broker.start()
    return broker


async def _undecoded(msg: StreamMessage[Any]) -> Any:
    return msg.raw_message  # the list of nats messages, as fetched


def batch_subscriber(
    broker: NatsBroker,
    settings: Settings,
    spec: ConsumerSpec,
    handler: Batch,
    *,
    start_seq: int | None = None,
    fetch_batch: int = 0,
) -> LogicSubscriber[Any]:
    """Declare one ConsumerSpec as a durable batch pull subscriber calling ``handler``
    with the raw messages of each batch (not started: ``await sub.start()``)."""
    sub = broker.subscriber(
        consumer_subject(spec),
        stream=JStream(spec.stream, declare=False),  # streams are declared by ensure_streams, with their limits
        durable=spec.durable,
        config=consumer_config(settings, spec, start_seq, fetch_batch),
        # no timeout of FastStream's: the layer's _Fetch decides when a batch is done
        pull_sub=PullSub(fetch_batch or settings.nats.fetch_batch, timeout=None, batch=True),
        ack_policy=AckPolicy.MANUAL,
        decoder=_undecoded,
        persistent=False,  # dropped with its last reference: a resync declares a new one
    )

    async def on_batch(msgs: Any) -> None:
        await handler(msgs)

    sub(on_batch)
    return sub


class _Round:
    """One subscriber's life: the batches it hands over, until a resync or an error ends it.
    ``busy`` is held while a batch or the app's ``idle`` work is in progress: a round
    that is ``closing`` lets that finish, starts nothing new, and is stopped."""

    def __init__(self, runner: Runner, spec: ConsumerSpec, pub: Publisher, ordered: bool) -> None:
        self.runner, self.spec, self.pub, self.ordered = runner, spec, pub, ordered
        self.expected = 1  # the next consumer sequence: the durable was just created
        self.ended = asyncio.Event()
        self.closing = False
        self.busy = asyncio.Lock()
        self.failed: BaseException | None = None

    async def handle(self, msgs: list[Msg]) -> None:
        if self.ended.is_set():
            return  # after a resync or an error: left unacked, delivered again to the next consumer
        async with self.busy:
            try:
                n = _in_order(msgs, self.expected) if self.ordered else len(msgs)
                self.expected += n
                if n:
                    await self.runner._process(self.spec, msgs[:n], self.pub)
                if n < len(msgs):
                    self.runner.app.counters["resyncs"] += 1
                    log.warning(
                        "%s: %s delivered out of order; consuming again from the position",
                        self.runner.app.name,
                        self.spec.durable,
                    )
                    self.ended.set()
            except Exception as exc:  # noqa: BLE001 - FastStream would log it and go on; the runner dies of it
                self.failed = exc
                self.ended.set()

    async def idle(self) -> None:
        """Nothing came within a wait: the app's time-based work (``AppBase.idle``), its
        outputs published and committed like a batch's. A batch subscriber has no such
        callback; :class:`_Fetch` calls this from FastStream's loop, between batches."""
        if self.ended.is_set() or self.closing:
            return
        async with self.busy:
            current_consumer.set(self.spec)
            try:
                outs = await self.runner.app.idle()
                if outs:
                    for out in outs:
                        await self.pub.publish(out.subject, out.data, out.id or "", out.headers)
                    await self.pub.flush()
                    await self.runner._commit()
            except Exception as exc:  # noqa: BLE001 - as a batch's error: the runner dies of it
                self.failed = exc
                self.ended.set()


async def consume(runner: Runner, spec: ConsumerSpec, stop: asyncio.Event, broker: NatsBroker) -> None:
    """One ConsumerSpec's input, until the runner or this spec stops: one subscriber
    per position (a resync declares the next)."""
    app, settings = runner.app, runner.settings
    ordered = _owns_position(app, spec.stream)
    async with Publisher(runner.bus.nc, window=settings.nats.publish_window) as pub:
        pub.wait_when_full = True  # a full output stream: back-pressure (inputs stay unacked), never an exit
        while True:
            start = app.positions.get(spec.position_key, 0) + 1 if ordered else None
            round_ = _Round(runner, spec, pub, ordered)
            sub = await retry_transient(
                f"creating consumer {spec.durable}",
                functools.partial(_started, runner, broker, spec, round_, start),
            )
            try:
                await _first(runner.stopping, stop, round_.ended)
            finally:
                round_.closing = True
                async with round_.busy:  # the batch or idle work in hand finishes
                    pass
                await sub.stop()
            if round_.failed is not None:
                raise round_.failed
            if not round_.ended.is_set():
                return


async def _started(
    runner: Runner, broker: NatsBroker, spec: ConsumerSpec, round_: _Round, start: int | None
) -> LogicSubscriber[Any]:
    """A round's subscriber, started; its durable declared anew from ``start`` (an app
    that owns its position) or as it is. One attempt: the caller retries transient errors."""
    if start is not None:
        await delete_consumer(runner.bus.js, spec)
    sub = batch_subscriber(
        broker, runner.settings, spec, round_.handle, start_seq=start, fetch_batch=runner._fetch_batch()
    )
    try:
        await sub.start()
    except BaseException:
        await sub.stop()
        raise
    # before its consume task first runs (start() has not yielded since creating it):
    subscription: Any = sub.subscription
    subscription.fetch = _Fetch(_puller(runner.app, subscription), round_)
    return sub


def _puller(app: Any, subscription: Any) -> Pull:
    """One pull request's worth: nats-py's ``fetch``, or with the app's ``queue_fetch``
    the one that takes a batch off the queue in one go (services/runtime/fetch.py)."""
    if getattr(app, "queue_fetch", False):
        return functools.partial(queue_fetch, subscription)
    fetch = subscription.fetch

    async def pull(batch: int, timeout: float, max_bytes: int = 0) -> list[Msg]:
        return list(await fetch(batch, timeout=timeout))

    return pull


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class _Fetch:
    """The subscription's ``fetch`` as FastStream's batch loop
    (``BatchPullStreamSubscriber._consume_pull``,
    ``faststream/nats/subscriber/usecases/stream_pull_subscriber.py``) should see it.
    That loop calls ``fetch`` until it has ``batch_size`` messages or its timeout
    passes, then hands the batch to the handler; a timeout error ends the gathering.
    This wrapper decides when a batch is done, as docs/runtime.md says:

    - **The first message** is waited for up to ``IDLE_WAIT``; nothing within it is
      the app's idle moment (:meth:`_Round.idle`, run here, between batches).
    - **At once**: without a ``fetch_linger`` what the server had goes to the handler
      at once. FastStream's loop would ask again for the rest of a partial batch
      until its timeout, so every partial batch (a trickle of alerts) would wait that
      long: after a partial batch the next call answers "timeout" without a request.
    - **Linger**: an app with ``fetch_linger`` keeps pulling that long after the first
      message while the batch is not full (a trickle is committed in fewer, larger
      batches), and, with ``fetch_max_bytes``, until three quarters of that many
      payload bytes (a request for the last few bytes would only be refused).
    - **Timeouts**: nats-py 2.16 raises a bare ``asyncio.TimeoutError`` when the
      deadline passes between its no-wait and lingering requests (nats.py PR #934),
      and the loop catches only ``nats.errors.TimeoutError``: its task died and the
      messages gathered so far were dropped unacked until ``ack_wait`` (a 30 s stall
      in tests/integration/test_alert_pipeline.py). It gets the nats one.
    - **Other errors** (a node failing over, a reconnect): counted
      (``fetch_errors``), logged, waited out with a growing pause, then a timeout.
      Left to FastStream, its loop drops the batch it was gathering and its
      supervisor restarts the task at once, however often it fails.
    - **A closing round** starts nothing new: a call waits ``IDLE_WAIT`` (never a
      busy loop) until the subscriber is stopped.
    """

    def __init__(self, pull: Pull, round_: _Round) -> None:
        self._pull = pull
        self._round = round_
        app = round_.runner.app
        self._app = app  # its counters and name, for fetch errors
        self._linger = float(getattr(app, "fetch_linger", 0.0))
        self._max_bytes = int(getattr(app, "fetch_max_bytes", 0))
        self._gathered = False  # the last call returned a partial batch: it is done
        self._failures = 0

    async def __call__(self, batch: int = 1, timeout: float | None = None, heartbeat: float | None = None) -> list[Msg]:
        if self._gathered:
            self._gathered = False
            raise nats.errors.TimeoutError  # the batch in hand goes now
        if self._round.closing or self._round.ended.is_set():
            await asyncio.sleep(IDLE_WAIT)
            raise nats.errors.TimeoutError
        try:
            msgs = await self._pull(batch, IDLE_WAIT, self._max_bytes)
        except TimeoutError:  # nats.errors.TimeoutError is one too
            self._failures = 0
            await self._round.idle()
            raise nats.errors.TimeoutError from None
        except Exception as exc:  # noqa: BLE001 - a server failing over, a reconnect: wait and pull again
            self._failures += 1
            await fetch_failed(self._app, self._failures, exc)
            raise nats.errors.TimeoutError from exc
        self._failures = 0
        if self._linger > 0 and len(msgs) < batch:
            msgs = await self._linger_on(msgs, batch)
        self._gathered = len(msgs) < batch
        return msgs

    async def _linger_on(self, msgs: list[Msg], batch: int) -> list[Msg]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger
        cap = self._max_bytes
        taken = sum(len(m.data) for m in msgs)
        while len(msgs) < batch and (left := deadline - loop.time()) > 0.005 and not self._round.closing:
            if cap and taken >= cap * 3 // 4:
                break
            try:
                more = await self._pull(batch - len(msgs), left, cap - taken if cap else 0)
            except TimeoutError:
                continue  # (an earlier request's late end status can cut a pull short: pull until the deadline)
            except Exception:  # noqa: BLE001 - the batch in hand goes; the next call meets the error again
                break
            msgs += more
            taken += sum(len(m.data) for m in more)
        return msgs
