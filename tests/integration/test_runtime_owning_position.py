"""The runtime's exactly-once promise on FastStream's subscriber
(services/runtime/on_faststream.py) for an app that owns its position, on a real
nats-server: the echo service, owning its EVENTS position (its durable deleted and
declared from position + 1 at every start), SIGKILLed twice mid-stream, echoes
every event exactly once. tests/integration/test_runtime.py proves it stateless."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_runtime import _kill_mid_stream_then_finish, _publish
from tests.support import make_settings


def test_events_consumed_exactly_once_across_sigkill_owning_the_position(
    nats_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECHO_OWNS_POSITION", "1")
    settings = make_settings(tmp_path / "vigil", nats_server.url, NATS_ACK_WAIT="2s", NATS_FETCH_BATCH="4")
    expected = asyncio.run(_publish(settings, 50_000, batch_size=50))
    kills, echoed = asyncio.run(_kill_mid_stream_then_finish(settings, tmp_path / "echo.log"))
    counts = Counter(echoed)
    assert kills == 2
    assert set(counts) == set(expected)
    assert [eid for eid, c in counts.items() if c > 1] == []
