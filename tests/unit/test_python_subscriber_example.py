"""examples/python-subscriber (docs/subscribers.md) on FastStream's TestNatsBroker: the
handler gets contract Structs (FastStream's msgspec serializer fills the defaults a
sender left out, and refuses what is no alert), not the JSON as it came. Against a
real Vigil: tests/integration/test_node_subscriber.py."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from faststream.nats import TestNatsBroker

from contracts.alerts import AlertThreshold
from contracts.events import Container
from contracts.subjects import ALERTS, ALERTS_OUT

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python-subscriber" / "subscriber.py"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("python_subscriber_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sparse(value: msgspec.Struct) -> bytes:
    """The JSON of a Struct with only its required fields (and its tag)."""
    full = msgspec.to_builtins(value)
    keep = {f.encode_name for f in msgspec.structs.fields(value) if f.required} | {"kind"}
    return msgspec.json.encode({k: v for k, v in full.items() if k in keep})


async def publish(module: ModuleType, payloads: list[bytes]) -> list[Exception]:
    failed: list[Exception] = []
    async with TestNatsBroker(module.broker) as broker:
        for payload in payloads:
            try:
                await broker.publish(payload, ALERTS_OUT, stream=ALERTS)
            except Exception as exc:  # noqa: BLE001 - the handler's error, raised by the test broker
                failed.append(exc)
    return failed


def test_alerts_are_decoded_into_the_contracts(capsys: pytest.CaptureFixture[str]) -> None:
    threshold = AlertThreshold(
        id="threshold:a", time=1, container=Container(id="c1"), MaxAlertsPerSec=2, DroppingAlertsInterval=60
    )
    assert asyncio.run(publish(example(), [sparse(threshold)])) == []
    assert capsys.readouterr().out == msgspec.json.encode(threshold).decode() + "\n"  # defaults filled in


def test_what_is_no_alert_is_refused_and_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    bad = [b'{"kind":"alert.v1","id":"a","time":"not a number"}', b'{"kind":"alert_clock.v1","partition":0}']
    failed = asyncio.run(publish(example(), bad))
    assert len(failed) == len(bad) and all("ValidationError" in type(e).__name__ for e in failed), failed
    assert capsys.readouterr().out == ""
