"""Real container runtimes for the kernel tests: podman (runc), a private
dockerd and a private containerd, each with an image (or root file system)
built locally by infra/host/demo-image.sh (no registry is reachable).

Facts these helpers lean on (../shared/notes/containers-on-these-machines.md):
podman's default crun refuses this cgroup v1-hybrid host (so ``--runtime
runc``) and its default rlimits are refused (so explicit ``--ulimit``);
dockerd starts without systemd with ``--iptables=false --bridge=none``;
``ctr run`` places a container where the CRI plugin would with ``--cgroup``
and ``--annotation``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_IMAGE = ROOT / "infra" / "host" / "demo-image.sh"
PODMAN_RUN = ["podman", "--runtime", "runc", "run", "--network", "none"]
PODMAN_RUN += ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def missing(*tools: str) -> str | None:
    lacking = [t for t in tools if shutil.which(t) is None]
    return f"not installed: {', '.join(lacking)} (`make test` installs them as root)" if lacking else None


def demo_image(target: str, ref: str, env: dict[str, str] | None = None) -> str:
    subprocess.run(["bash", str(DEMO_IMAGE), target, ref], check=True, capture_output=True, env=env, timeout=300)
    return ref


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready within {timeout}s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Dockerd:
    """A dockerd of the test's own (data, exec root and socket in a temp dir)."""

    socket: Path

    def docker(self, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        cmd = ["/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker", "-H", f"unix://{self.socket}"]
        return subprocess.run([*cmd, *args], capture_output=True, timeout=120, **kw)  # type: ignore[call-overload]


@contextlib.contextmanager
def daemon(base: Path, name: str, argv: list[str], ready: Callable[[], bool]) -> Iterator[subprocess.Popen[bytes]]:
    """A runtime daemon of the test's own, logging to ``base/<name>.log``; stopped at the end."""
    base.mkdir(parents=True, exist_ok=True)
    log_path = base / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
        try:
            wait_until(lambda: proc.poll() is not None or ready(), 60, name)
            assert proc.poll() is None, log_path.read_text()[-3000:]
            yield proc
        finally:
            stop(proc)


@contextlib.contextmanager
def dockerd(base: Path) -> Iterator[Dockerd]:
    sock = base / "docker.sock"
    argv = [
        "dockerd", "--iptables=false", "--bridge=none", "--data-root", str(base / "data"),
        "--exec-root", str(base / "exec"), "--pidfile", str(base / "dockerd.pid"), "-H", f"unix://{sock}",
    ]  # fmt: skip
    d = Dockerd(sock)
    with daemon(base, "dockerd", argv, lambda: d.docker("info").returncode == 0):
        try:
            yield d
        finally:
            with contextlib.suppress(Exception):
                if ids := d.docker("ps", "-aq").stdout.decode().split():
                    d.docker("rm", "-f", *ids)


@dataclass
class Containerd:
    """A containerd of the test's own; ``state`` is what Vigil's containerd source reads."""

    address: Path
    state: Path

    def ctr(self, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        cmd = ["ctr", "--address", str(self.address), "--namespace", "k8s.io", *args]
        return subprocess.run(cmd, capture_output=True, timeout=120, **kw)  # type: ignore[call-overload]


@contextlib.contextmanager
def containerd(base: Path, state: Path) -> Iterator[Containerd]:
    base.mkdir(parents=True, exist_ok=True)
    config = base / "config.toml"
    config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  disable_apparmor = true\n')
    c = Containerd(base / "containerd.sock", state)
    argv = ["containerd", "--config", str(config), "--root", str(base / "root"), "--state", str(state),
            "--address", str(c.address)]  # fmt: skip
    with daemon(base, "containerd", argv, lambda: c.ctr("version").returncode == 0):
        try:
            yield c
        finally:
            with contextlib.suppress(Exception):
                for cid in c.ctr("containers", "list", "-q").stdout.decode().split():
                    c.ctr("tasks", "kill", "-s", "KILL", cid)
                    c.ctr("containers", "delete", cid)
