"""The FastStream side of the runner (services/runtime/on_faststream.py) on
FastStream's in-memory TestNatsBroker: handler wiring, payloads and headers.
What needs a server (acks, positions, resyncs) is in the integration tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import pytest
from faststream.nats import TestNatsBroker
from nats.aio.msg import Msg
from nats.js import api as js_api

from contracts.alerts import AlertClock
from contracts.codec import encode_json
from contracts.subjects import ALERTS, ALERTS_CLOCK, ALERTS_RAW, ConsumerSpec
from services.runtime.on_faststream import _Fetch, _Round, batch_subscriber, new_broker
from services.runtime.settings import Settings, load_settings
from services.throttler.app import Throttler

SPEC = ConsumerSpec(ALERTS, "throttler", (ALERTS_RAW, ALERTS_CLOCK))


def settings_in(tmp_path: Path) -> Settings:
    return load_settings(env={"VIGIL_DATA_DIR": str(tmp_path), "VIGIL_NATS_URL": "nats://127.0.0.1:1"})


def wired(settings: Settings, **kwargs: Any) -> tuple[Any, Any, list[list[Msg]]]:
    batches: list[list[Msg]] = []

    async def handler(msgs: list[Msg]) -> None:
        batches.append(list(msgs))

    broker = new_broker(["nats://127.0.0.1:1"], settings, "test")
    return broker, batch_subscriber(broker, settings, SPEC, handler, **kwargs), batches


def test_the_handler_gets_the_raw_messages_of_every_filter_subject_with_their_headers(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    broker, _sub, batches = wired(settings)
    clock = encode_json(AlertClock(id="c1", source="vigil.drift.0", time=5, node="n1"))
    not_json = b"\x93\x01\x02\x03"  # handed through as bytes: apps decode their own contracts

    async def scenario() -> None:
        async with TestNatsBroker(broker) as br:
            await br.publish(clock, ALERTS_CLOCK, stream=ALERTS, headers={"Nats-Msg-Id": "c1", "traceparent": "00-ab"})
            await br.publish(not_json, ALERTS_RAW, stream=ALERTS, headers={"Nats-Msg-Id": "a1"})
            await br.publish(b"x", "vigil.alerts.out", stream=ALERTS)  # not this consumer's subject

    asyncio.run(scenario())
    assert [[m.subject for m in batch] for batch in batches] == [[ALERTS_CLOCK], [ALERTS_RAW]]
    first, second = batches[0][0], batches[1][0]
    assert msgspec.json.decode(first.data, type=AlertClock).node == "n1"
    assert first.headers is not None
    assert (first.headers["Nats-Msg-Id"], first.headers["traceparent"]) == ("c1", "00-ab")
    assert second.data == not_json


def test_the_durable_is_declared_like_the_lean_loops(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    _nats, sub, _ = wired(settings, start_seq=42, fetch_batch=50_000)
    config = sub.config
    assert config.durable_name == "throttler"
    assert config.ack_policy == js_api.AckPolicy.EXPLICIT
    assert config.deliver_policy == js_api.DeliverPolicy.BY_START_SEQUENCE and config.opt_start_seq == 42
    assert config.filter_subjects == [ALERTS_RAW, ALERTS_CLOCK]
    assert config.max_ack_pending == 50_000  # at least a batch: acks wait for the commit
    assert sub.pull_sub.batch and sub.pull_sub.batch_size == 50_000


def test_the_throttler_declares_faststream(tmp_path: Path) -> None:
    assert Throttler(settings_in(tmp_path)).transport == "faststream"


class Subscription:
    """A pull subscription whose fetch returns prepared answers (a list of messages or an exception)."""

    def __init__(self, *answers: list[Msg] | BaseException) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def fetch(self, batch: int = 1, timeout: float | None = 5, heartbeat: float | None = None) -> list[Msg]:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_a_bare_asyncio_timeout_from_fetch_reaches_faststream_as_the_nats_timeout_it_catches() -> None:
    sub = Subscription(TimeoutError())  # nats-py 2.16 when the deadline passes between its two requests
    fetch = _Fetch(sub.fetch, at_once=True, app=None)
    with pytest.raises(nats.errors.TimeoutError):
        asyncio.run(fetch(10, 0.5))


def test_at_once_a_partial_batch_ends_the_gathering_and_a_full_one_does_not() -> None:
    one, two = delivered(1, 1), delivered(2, 2)
    sub = Subscription([one], [one, two], [two])
    fetch = _Fetch(sub.fetch, at_once=True, app=None)

    async def scenario() -> list[object]:
        got: list[object] = [await fetch(2, 0.5)]  # partial: FastStream asks for the rest...
        try:
            await fetch(1, 0.4)
        except nats.errors.TimeoutError as exc:  # ...and hears "done" without a request
            got.append(type(exc))
        got += [await fetch(2, 0.5), await fetch(2, 0.5)]  # a full batch: the next round fetches
        return got

    assert asyncio.run(scenario()) == [[one], nats.errors.TimeoutError, [one, two], [two]]
    assert sub.calls == 3


def test_a_failing_fetch_is_counted_waited_out_and_ends_the_gathering_as_a_timeout(tmp_path: Path) -> None:
    app = Throttler(settings_in(tmp_path))
    one = delivered(1, 1)
    sub = Subscription([one], ConnectionResetError("node gone"), [one])
    fetch = _Fetch(sub.fetch, at_once=False, app=app)

    async def scenario() -> list[object]:
        got: list[object] = [await fetch(2, 0.5)]
        try:
            await fetch(1, 0.4)
        except nats.errors.TimeoutError as exc:  # FastStream hands over [one] instead of dropping it
            got.append(type(exc))
        got.append(await fetch(2, 0.5))
        return got

    assert asyncio.run(scenario()) == [[one], nats.errors.TimeoutError, [one]]
    assert app.counters["fetch_errors"] == 1


def test_with_a_linger_faststream_gathers_the_rest_of_a_partial_batch() -> None:
    one, two = delivered(1, 1), delivered(2, 2)
    sub = Subscription([one], [two])
    fetch = _Fetch(sub.fetch, at_once=False, app=None)

    async def scenario() -> list[list[Msg]]:
        return [await fetch(2, 0.05), await fetch(1, 0.04)]

    assert asyncio.run(scenario()) == [[one], [two]]


class FakeRunner:
    """What _Round uses of a Runner: the app's counters and _process."""

    def __init__(self, settings: Settings) -> None:
        self.app = Throttler(settings)
        self.processed: list[list[int]] = []

    async def _process(self, spec: ConsumerSpec, msgs: list[Msg], pub: Any) -> None:
        self.processed.append([m.metadata.sequence.stream for m in msgs])


def delivered(stream_seq: int, consumer_seq: int) -> Msg:
    reply = f"$JS.ACK.{ALERTS}.throttler.1.{stream_seq}.{consumer_seq}.1767225600000000000.0"
    return Msg(_client=None, subject=ALERTS_RAW, reply=reply, data=b"{}", headers=None)  # type: ignore[arg-type]


def test_a_round_processes_the_in_order_prefix_and_ends_at_a_jump_in_consumer_sequences(tmp_path: Path) -> None:
    runner = FakeRunner(settings_in(tmp_path))
    round_ = _Round(runner, SPEC, pub=None, ordered=True)  # type: ignore[arg-type]

    async def scenario() -> None:
        await round_.handle([delivered(10, 1), delivered(11, 2)])
        await round_.handle([delivered(12, 3), delivered(14, 5), delivered(15, 6)])  # delivery 4 never arrived
        await round_.handle([delivered(13, 7)])  # after the jump: left unacked for the next consumer

    asyncio.run(scenario())
    assert runner.processed == [[10, 11], [12]]
    assert round_.ended.is_set() and round_.failed is None
    assert runner.app.counters["resyncs"] == 1


def test_a_round_that_does_not_own_a_position_takes_every_batch_whole(tmp_path: Path) -> None:
    runner = FakeRunner(settings_in(tmp_path))
    round_ = _Round(runner, SPEC, pub=None, ordered=False)  # type: ignore[arg-type]
    asyncio.run(round_.handle([delivered(12, 3), delivered(14, 9)]))
    assert runner.processed == [[12, 14]] and not round_.ended.is_set()


def test_an_error_in_processing_ends_the_round_and_is_kept_for_the_runner(tmp_path: Path) -> None:
    runner = FakeRunner(settings_in(tmp_path))

    async def failing(spec: ConsumerSpec, msgs: list[Msg], pub: Any) -> None:
        raise RuntimeError("publish never acknowledged")

    runner._process = failing  # type: ignore[method-assign]
    round_ = _Round(runner, SPEC, pub=None, ordered=True)  # type: ignore[arg-type]
    asyncio.run(round_.handle([delivered(1, 1)]))
    assert round_.ended.is_set() and isinstance(round_.failed, RuntimeError)
