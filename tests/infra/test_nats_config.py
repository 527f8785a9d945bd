"""infra/nats: the single-node config and the 3-node cluster config start real
nats-server processes (ports and store dirs moved to free ones/tmp), and
Vigil's streams come up with 3 replicas on the cluster."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from contracts.subjects import STREAMS
from services.runtime.embedded import server_binary
from tests.support import make_settings, open_bus

NATS_DIR = Path(__file__).resolve().parents[2] / "infra" / "nats"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relocate(text: str, ports: dict[int, int], store: Path) -> str:
    """The config with every known port mapped to a free one and the store dir in tmp."""
    text = re.sub(r'store_dir: "[^"]*"', f'store_dir: "{store}"', text)
    return re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{ports.get(int(m.group(1)), int(m.group(1)))}", text)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "nats-server exited; config rejected?"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nats-server did not listen on {port}")


def start(conf: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([server_binary(), "-c", str(conf)], stdout=open(log, "wb"), stderr=subprocess.STDOUT)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[str]]:
    ports = {p: free_port() for p in (4222, 4223, 4224, 8222, 8223, 8224, 6222, 6223, 6224)}
    procs = []
    try:
        for name in "abc":
            conf = tmp_path / f"node-{name}.conf"
            conf.write_text(relocate((NATS_DIR / "cluster" / f"node-{name}.conf").read_text(), ports, tmp_path / name))
            procs.append(start(conf, tmp_path / f"{name}.log"))
        for i, proc in enumerate(procs):
            wait_port(ports[4222 + i], proc)
        yield [f"nats://127.0.0.1:{ports[4222 + i]}" for i in range(3)]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)


def test_single_node_config_serves_jetstream(tmp_path: Path) -> None:
    ports = {4222: free_port(), 8222: free_port()}
    conf = tmp_path / "single.conf"
    conf.write_text(relocate((NATS_DIR / "nats-single.conf").read_text(), ports, tmp_path / "js"))
    proc = start(conf, tmp_path / "single.log")
    try:
        wait_port(ports[4222], proc)

        async def check() -> int:
            nc = await nats.connect(f"nats://127.0.0.1:{ports[4222]}")
            try:
                info = await nc.jetstream().account_info()
                return nc.max_payload if info else 0
            finally:
                await nc.close()

        assert asyncio.run(check()) == 4 * 1024 * 1024
    finally:
        proc.terminate()
        proc.wait(20)


def test_vigil_streams_get_three_replicas_on_the_cluster(cluster: list[str], tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "vigil", ",".join(cluster), NATS_REPLICAS="3")

    async def scenario() -> dict[str, int]:
        deadline = time.monotonic() + 30
        while True:  # the cluster elects a meta leader before it accepts stream creation
            try:
                bus = await open_bus(settings)
                break
            except Exception:  # noqa: BLE001 - JetStream not ready yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        try:
            out = {}
            for spec in STREAMS:
                info = await bus.js.stream_info(spec.name)
                out[spec.name] = 1 + len(info.cluster.replicas or []) if info.cluster and info.cluster.leader else 0
            return out
        finally:
            await bus.close()

    replicas = asyncio.run(scenario())
    assert replicas == {spec.name: 3 for spec in STREAMS}
