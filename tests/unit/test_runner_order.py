"""The runner's check that a stateful app's deliveries come in order (consumer sequence 1, 2, ...)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from services.runtime.service import _in_order


def delivered(*consumer_seqs: int) -> list[Any]:
    return [SimpleNamespace(metadata=SimpleNamespace(sequence=SimpleNamespace(consumer=c))) for c in consumer_seqs]


def test_the_in_order_prefix_ends_at_the_first_jump() -> None:
    assert _in_order(delivered(1, 2, 3), 1) == 3
    assert _in_order(delivered(5, 6, 8, 9), 5) == 2  # delivery 7 never arrived: 8 and 9 are out of order
    assert _in_order(delivered(2, 3), 1) == 0  # the first one is already late
    assert _in_order([], 4) == 0


def test_a_redelivery_behind_newer_input_does_not_move_the_position_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """After a crash JetStream delivers new messages before the unacked ones come back: the
    position committed with a batch [5, 6, 3] is 6, the highest sequence in it (it was 3)."""
    import asyncio

    from contracts.subjects import DECISIONS, ConsumerSpec
    from services.runtime.service import AppBase, Incoming, Runner
    from tests.support import make_settings

    committed: list[dict[str, int]] = []

    class Recorder(AppBase):
        name = "recorder"
        consumers = (ConsumerSpec(DECISIONS, "recorder"),)

        def handle(self, msg: Incoming) -> list[Any]:
            return []

        async def commit(self) -> None:
            committed.append(dict(self.positions))

    class Pub:
        async def publish(self, *args: Any) -> None: ...

        async def flush(self) -> list[Any]:
            return []

    async def ack() -> None: ...

    def msg(seq: int) -> Any:
        meta = SimpleNamespace(stream=DECISIONS, sequence=SimpleNamespace(stream=seq, consumer=seq), num_delivered=1)
        return SimpleNamespace(metadata=meta, subject="vigil.decisions.x", data=b"{}", headers={}, ack=ack)

    settings = make_settings(tmp_path, "nats://127.0.0.1:1")
    runner = Runner(Recorder(settings), SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    asyncio.run(runner._process(Recorder.consumers[0], [msg(5), msg(6), msg(3)], Pub()))  # type: ignore[arg-type]
    asyncio.run(runner._process(Recorder.consumers[0], [msg(4)], Pub()))  # type: ignore[arg-type]
    assert committed == [{DECISIONS: 6}, {DECISIONS: 6}]
