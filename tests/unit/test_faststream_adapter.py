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
from services.runtime.on_faststream import IDLE_WAIT, _Fetch, _Round, batch_subscriber, new_broker
from services.runtime.service import Outgoing
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


class Pulls:
    """A pull request's answers, prepared: a list of messages or an exception each."""

    def __init__(self, *answers: list[Msg] | BaseException) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int, int]] = []  # (batch, max_bytes) asked

    async def __call__(self, batch: int, timeout: float, max_bytes: int = 0) -> list[Msg]:
        self.calls.append((batch, max_bytes))
        answer = self.answers.pop(0) if self.answers else nats.errors.TimeoutError()
        if isinstance(answer, BaseException):
            raise answer
        return answer


class FakeRunner:
    """What _Round uses of a Runner: the app, _process and _commit."""

    def __init__(self, settings: Settings) -> None:
        self.app = Throttler(settings)
        self.processed: list[list[int]] = []
        self.commits = 0

    async def _process(self, spec: ConsumerSpec, msgs: list[Msg], pub: Any) -> None:
        self.processed.append([m.metadata.sequence.stream for m in msgs])

    async def _commit(self) -> None:
        self.commits += 1


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str]] = []
        self.flushes = 0

    async def publish(self, subject: str, data: bytes, msg_id: str, headers: Any = None) -> None:
        self.published.append((subject, data, msg_id))

    async def flush(self) -> None:
        self.flushes += 1


def fetching(tmp_path: Path, pulls: Pulls, **app_attrs: Any) -> tuple[_Fetch, FakeRunner, _Round, FakePublisher]:
    runner = FakeRunner(settings_in(tmp_path))
    for name, value in app_attrs.items():
        setattr(runner.app, name, value)
    pub = FakePublisher()
    round_ = _Round(runner, SPEC, pub=pub, ordered=False)  # type: ignore[arg-type]
    return _Fetch(pulls, round_), runner, round_, pub


def test_a_bare_asyncio_timeout_from_a_pull_reaches_faststream_as_the_nats_timeout_it_catches(tmp_path: Path) -> None:
    fetch, *_ = fetching(
        tmp_path, Pulls(TimeoutError())
    )  # nats-py 2.16 when the deadline passes between its two requests
    with pytest.raises(nats.errors.TimeoutError):
        asyncio.run(fetch(10, 0.5))


def test_at_once_a_partial_batch_ends_the_gathering_and_a_full_one_does_not(tmp_path: Path) -> None:
    one, two = delivered(1, 1), delivered(2, 2)
    pulls = Pulls([one], [one, two], [two])
    fetch, *_ = fetching(tmp_path, pulls)

    async def scenario() -> list[object]:
        got: list[object] = [await fetch(2, None)]  # partial: FastStream asks for the rest...
        try:
            await fetch(1, None)
        except nats.errors.TimeoutError as exc:  # ...and hears "done" without a request
            got.append(type(exc))
        got += [await fetch(2, None), await fetch(2, None)]  # a full batch: the next round fetches
        return got

    assert asyncio.run(scenario()) == [[one], nats.errors.TimeoutError, [one, two], [two]]
    assert len(pulls.calls) == 3


def test_a_failing_pull_is_counted_waited_out_and_ends_the_gathering_as_a_timeout(tmp_path: Path) -> None:
    one = delivered(1, 1)
    fetch, runner, *_ = fetching(tmp_path, Pulls([one], ConnectionResetError("node gone"), [one]))

    async def scenario() -> list[object]:
        got: list[object] = [await fetch(2, None)]
        try:
            await fetch(1, None)  # the partial batch went: this gathering is over
        except nats.errors.TimeoutError as exc:
            got.append(type(exc))
        try:
            await fetch(2, None)
        except nats.errors.TimeoutError as exc:  # the failure: FastStream hands over nothing, restarts nothing
            got.append(type(exc).__name__ + " from " + type(exc.__cause__).__name__)
        got.append(await fetch(2, None))
        return got

    assert asyncio.run(scenario()) == [[one], nats.errors.TimeoutError, "TimeoutError from ConnectionResetError", [one]]
    assert runner.app.counters["fetch_errors"] == 1


def test_with_a_linger_the_rest_of_a_partial_batch_is_pulled_for_that_long(tmp_path: Path) -> None:
    one, two, three = delivered(1, 1), delivered(2, 2), delivered(3, 3)
    pulls = Pulls([one], nats.errors.TimeoutError(), [two], [three])
    fetch, *_ = fetching(tmp_path, pulls, fetch_linger=0.2)
    assert asyncio.run(fetch(3, None)) == [one, two, three]  # one batch: a timeout within the linger is not its end
    assert [batch for batch, _ in pulls.calls] == [3, 2, 2, 1]


def test_a_linger_ends_at_three_quarters_of_the_byte_cap(tmp_path: Path) -> None:
    big = [delivered(i, i, data=b"x" * 400) for i in range(1, 4)]
    pulls = Pulls([big[0]], [big[1]], [big[2]])
    fetch, *_ = fetching(tmp_path, pulls, fetch_linger=5.0, fetch_max_bytes=1000)
    assert asyncio.run(fetch(10, None)) == big[:2]  # 800 bytes >= 750: no request for the last 200
    assert [cap for _, cap in pulls.calls] == [1000, 600]


def test_nothing_within_the_wait_is_the_apps_idle_moment_published_and_committed(tmp_path: Path) -> None:
    fetch, runner, _round, pub = fetching(tmp_path, Pulls(nats.errors.TimeoutError(), [delivered(1, 1)]))
    clock = Outgoing(ALERTS_CLOCK, b"{}", id="tick-1")

    async def idle() -> list[Outgoing]:
        return [clock]

    runner.app.idle = idle  # type: ignore[method-assign]

    async def scenario() -> None:
        with pytest.raises(nats.errors.TimeoutError):
            await fetch(2, None)
        await fetch(2, None)  # a batch: no idle work

    asyncio.run(scenario())
    assert pub.published == [(ALERTS_CLOCK, b"{}", "tick-1")]
    assert (pub.flushes, runner.commits) == (1, 1)


def test_an_idle_error_ends_the_round_for_the_runner(tmp_path: Path) -> None:
    fetch, runner, round_, _pub = fetching(tmp_path, Pulls())

    async def idle() -> list[Outgoing]:
        raise OSError("archive gone")

    runner.app.idle = idle  # type: ignore[method-assign]
    with pytest.raises(nats.errors.TimeoutError):
        asyncio.run(fetch(2, None))
    assert round_.ended.is_set() and isinstance(round_.failed, OSError)


def test_a_closing_round_pulls_nothing_and_waits_instead_of_spinning(tmp_path: Path) -> None:
    pulls = Pulls([delivered(1, 1)])
    fetch, _runner, round_, _pub = fetching(tmp_path, pulls)
    round_.closing = True

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(nats.errors.TimeoutError):
            await fetch(2, None)
        return loop.time() - began

    assert asyncio.run(scenario()) >= IDLE_WAIT * 0.9
    assert pulls.calls == []


def delivered(stream_seq: int, consumer_seq: int, data: bytes = b"{}") -> Msg:
    reply = f"$JS.ACK.{ALERTS}.throttler.1.{stream_seq}.{consumer_seq}.1767225600000000000.0"
    return Msg(_client=None, subject=ALERTS_RAW, reply=reply, data=data, headers=None)  # type: ignore[arg-type]


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
