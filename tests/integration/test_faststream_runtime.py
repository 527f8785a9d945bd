"""The runtime's exactly-once promise with the input side on FastStream
(services/runtime/on_faststream.py), on a real nats-server: the echo service,
SIGKILLed twice mid-stream, echoes every event exactly once, as on the lean loop
(tests/integration/test_runtime.py), stateless or owning its position."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_runtime import _kill_mid_stream_then_finish, _publish
from tests.support import make_settings


@pytest.mark.parametrize("owns_position", [False, True], ids=["stateless", "owns-position"])
def test_events_consumed_exactly_once_across_sigkill_on_faststream(
    nats_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owns_position: bool
) -> None:
    monkeypatch.setenv("ECHO_TRANSPORT", "faststream")
    if owns_position:
        monkeypatch.setenv("ECHO_OWNS_POSITION", "1")
    settings = make_settings(tmp_path / "vigil", nats_server.url, NATS_ACK_WAIT="2s", NATS_FETCH_BATCH="4")
    expected = asyncio.run(_publish(settings, 50_000, batch_size=50))
    kills, echoed = asyncio.run(_kill_mid_stream_then_finish(settings, tmp_path / "echo.log"))
    counts = Counter(echoed)
    assert kills == 2
    assert set(counts) == set(expected)
    assert [eid for eid, c in counts.items() if c > 1] == []
