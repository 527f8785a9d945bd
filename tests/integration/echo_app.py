"""A test service: for every EventBatch it consumes, publish the ids of its
events to ``test.echo`` (stream TESTECHO). Run as a killable subprocess by the
exactly-once test: ``python -m tests.integration.echo_app``. ``ECHO_OWNS_POSITION=1``
makes it own its position (the durable recreated from it at every start and resync)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import msgspec

from contracts.codec import ContractError, decode_batch
from contracts.subjects import EVENTS, ConsumerSpec, StreamSpec
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing, serve
from services.runtime.settings import Settings, load_settings

ECHO_STREAM = StreamSpec("TESTECHO", ("test.echo",), "test output")


class Echo(AppBase):
    name = "echo"
    consumers = (ConsumerSpec(EVENTS, "echo"),)

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            batch = decode_batch(msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        return [Outgoing("test.echo", msgspec.json.encode(batch.event_ids()))]


async def _main(settings: Settings) -> None:
    from services.runtime.bus import connect

    bus = await connect(settings, start_embedded=False)
    await bus.ensure_streams((ECHO_STREAM,))
    echo = Echo(settings)
    if os.environ.get("ECHO_OWNS_POSITION"):
        echo.stateful_streams = frozenset({EVENTS})
    await serve(echo, settings, bus)
    await bus.close()


if __name__ == "__main__":
    asyncio.run(_main(load_settings()))
