"""Vigil's alerts as one JSON line each, from a FastStream subscriber (docs/subscribers.md)."""

import asyncio
import os

import msgspec
from fast_depends.msgspec import MsgSpecSerializer
from faststream import FastStream
from faststream.nats import JStream, NatsBroker

from contracts.alerts import Alert, AlertThreshold

url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
broker = NatsBroker(url, serializer=MsgSpecSerializer(), logger=None)  # stdout: only the alerts


@broker.subscriber("vigil.alerts.out", stream=JStream("ALERTS", declare=False))
async def on_alert(alert: Alert | AlertThreshold) -> None:
    print(msgspec.json.encode(alert).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(FastStream(broker, logger=None).run())
