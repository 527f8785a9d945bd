from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime import embedded
from services.runtime.settings import Settings
from tests.support import make_settings


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[embedded.EmbeddedServer]:
    """A real nats-server with JetStream in a temp dir, on a free loopback port."""
    server = embedded.start(tmp_path / "nats-data", port=-1)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(tmp_path: Path, nats_server: embedded.EmbeddedServer) -> Settings:
    return make_settings(tmp_path / "vigil", nats_server.url)


def needs_root_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (CI runs as root)"
    return None
