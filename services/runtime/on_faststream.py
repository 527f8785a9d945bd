"""The runner's input side on FastStream: an app with ``transport = "faststream"``
is fed by a FastStream JetStream batch pull subscriber instead of the lean fetch loop.

FastStream does the framework's part: the connection (a ``NatsBroker``), the durable
pull consumer, the fetch loop that gathers a batch (``PullSub(batch=True)``: up to
``fetch_batch`` messages or the app's ``fetch_linger`` seconds; without a linger, what
the server has at once, as on the lean loop: see :class:`_Fetch`), parsing, and graceful stop (a
subscriber's ``stop`` waits for the batch in hand, up to the broker's
``graceful_timeout``). Vigil's guarantees stay where they were, in
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

Apps with an ``idle`` hook (the archiver) stay on the lean loop for now: a batch
subscriber has no "nothing came" callback.
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
from services.runtime.service import Runner, _in_order, _owns_position, fetch_failed
from services.runtime.settings import Settings

if TYPE_CHECKING:
    from faststream.nats.subscriber.usecases.basic import LogicSubscriber

log = logging.getLogger("vigil.service")

IDLE_WAIT = 0.5  # s: one pull request's wait when nothing comes (the lean loop's)

Batch = Callable[[list[Msg]], Awaitable[None]]


def new_broker(servers: list[str], settings: Settings, name: str, graceful_timeout: float = 15.0) -> NatsBroker:
    """A NatsBroker with Vigil's connect options; FastStream's access log (a line per
    batch received and processed) at DEBUG, its errors as they are.
    ``graceful_timeout``: how long a stopping subscriber lets the batch in hand finish
    (a partition given up: a third of the lease; a service stopping: well within the
    supervisor's 20 s before SIGKILL). Cut short, the batch is redelivered unchanged."""
    return NatsBroker(
        servers,
        serializer=MsgSpecSerializer(),
        apply_types=False,  # the handler takes the raw batch: no dependency injection per call (~0.1 ms a batch)
        graceful_timeout=graceful_timeout,
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
    linger: float = 0.0,
) -> LogicSubscriber[Any]:
    """Declare one ConsumerSpec as a durable batch pull subscriber calling ``handler``
    with the raw messages of each batch (not started: ``await sub.start()``)."""
    sub = broker.subscriber(
        consumer_subject(spec),
        stream=JStream(spec.stream, declare=False),  # streams are declared by ensure_streams, with their limits
        durable=spec.durable,
        config=consumer_config(settings, spec, start_seq, fetch_batch),
        pull_sub=PullSub(fetch_batch or settings.nats.fetch_batch, timeout=linger or IDLE_WAIT, batch=True),
        ack_policy=AckPolicy.MANUAL,
        decoder=_undecoded,
        persistent=False,  # dropped with its last reference: a resync declares a new one
    )

    async def on_batch(msgs: Any) -> None:
        await handler(msgs)

    sub(on_batch)
    return sub


class _Round:
    """One subscriber's life: the batches it hands over, until a resync or an error ends it."""

    def __init__(self, runner: Runner, spec: ConsumerSpec, pub: Publisher, ordered: bool) -> None:
        self.runner, self.spec, self.pub, self.ordered = runner, spec, pub, ordered
        self.expected = 1  # the next consumer sequence: the durable was just created
        self.ended = asyncio.Event()
        self.failed: BaseException | None = None

    async def handle(self, msgs: list[Msg]) -> None:
        if self.ended.is_set():
            return  # after a resync or an error: left unacked, delivered again to the next consumer
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


async def consume(runner: Runner, spec: ConsumerSpec, stop: asyncio.Event, broker: NatsBroker) -> None:
    """What :meth:`Runner._consume` does for a FastStream app: one subscriber per
    position (a resync declares the next), until the runner or this spec stops."""
    app, settings = runner.app, runner.settings
    ordered = _owns_position(app, spec.stream)
    linger = float(getattr(app, "fetch_linger", 0.0))
    async with Publisher(runner.bus.nc, window=settings.nats.publish_window) as pub:
        pub.wait_when_full = True  # a full output stream: back-pressure (inputs stay unacked), never an exit
        while True:
            start = app.positions.get(spec.position_key, 0) + 1 if ordered else None
            round_ = _Round(runner, spec, pub, ordered)
            sub = await retry_transient(
                f"creating consumer {spec.durable}",
                functools.partial(_started, runner, broker, spec, round_, start, linger),
            )
            try:
                await _first(runner.stopping, stop, round_.ended)
            finally:
                await sub.stop()  # the batch in hand finishes first (graceful_timeout)
            if round_.failed is not None:
                raise round_.failed
            if not round_.ended.is_set():
                return


async def _started(
    runner: Runner, broker: NatsBroker, spec: ConsumerSpec, round_: _Round, start: int | None, linger: float
) -> LogicSubscriber[Any]:
    """A round's subscriber, started; its durable declared anew from ``start`` (an app
    that owns its position) or as it is. One attempt: the caller retries transient errors."""
    if start is not None:
        await delete_consumer(runner.bus.js, spec)
    sub = batch_subscriber(
        broker,
        runner.settings,
        spec,
        round_.handle,
        start_seq=start,
        fetch_batch=runner._fetch_batch(),
        linger=linger,
    )
    try:
        await sub.start()
    except BaseException:
        await sub.stop()
        raise
    # before its consume task first runs (start() has not yielded since creating it):
    sub.subscription.fetch = _Fetch(sub.subscription.fetch, not linger, runner.app)  # type: ignore[union-attr]
    return sub


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
    ``faststream/nats/subscriber/usecases/stream_pull_subscriber.py``) should see it:

    - **At once** (``at_once``: apps without ``fetch_linger``): that loop asks again
      for the rest of a partial batch until its timeout, so every partial batch
      would wait the whole timeout (a trickle of alerts: that much latency each).
      After a partial batch, the next call ends the gathering (FastStream takes the
      timeout as "batch done") and the batch is processed at once; the next round
      waits up to ``IDLE_WAIT`` for its first message, as the lean loop does.
    - **Timeouts**: nats-py 2.16 raises a bare ``asyncio.TimeoutError`` when the
      deadline passes between its no-wait and lingering requests (nats.py PR #934),
      and the loop catches only ``nats.errors.TimeoutError``: its task died and the
      messages gathered so far were dropped unacked until ``ack_wait`` (a 30 s
      stall in tests/integration/test_alert_pipeline.py). It gets the nats one.
    - **Other errors** (a node failing over, a reconnect) are what the lean loop
      does with them: counted (``fetch_errors``), logged, waited out with a growing
      pause, then a timeout, so FastStream hands over the batch in hand. Left to
      FastStream, its loop drops the batch it was gathering and its supervisor
      restarts the task at once, however often it fails.
    """

    def __init__(self, fetch: Callable[..., Awaitable[list[Msg]]], at_once: bool, app: Any) -> None:
        self._fetch = fetch
        self._at_once = at_once
        self._app = app  # its counters and name, for fetch errors
        self._gathering = False  # the last call returned a partial batch
        self._failures = 0

    async def __call__(self, batch: int = 1, timeout: float | None = 5, heartbeat: float | None = None) -> list[Msg]:
        if self._gathering:
            self._gathering = False
            raise nats.errors.TimeoutError  # the partial batch in hand goes now
        try:
            msgs = await self._fetch(batch, timeout, heartbeat)
        except nats.errors.TimeoutError:
            self._failures = 0
            raise
        except TimeoutError as exc:
            self._failures = 0
            raise nats.errors.TimeoutError from exc
        except Exception as exc:  # noqa: BLE001 - a server failing over, a reconnect: wait and pull again
            self._failures += 1
            await fetch_failed(self._app, self._failures, exc)
            raise nats.errors.TimeoutError from exc
        self._failures = 0
        self._gathering = self._at_once and len(msgs) < batch
        return msgs
