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
from collections.abc import Iterator
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
    proc: subprocess.Popen[bytes]

    def docker(self, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        cmd = ["/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker", "-H", f"unix://{self.socket}"]
        return subprocess.run([*cmd, *args], capture_output=True, timeout=120, **kw)  # type: ignore[call-overload]


@contextlib.contextmanager
def dockerd(base: Path) -> Iterator[Dockerd]:
    base.mkdir(parents=True, exist_ok=True)
    sock = base / "docker.sock"
    log = open(base / "dockerd.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            "dockerd",
            "--iptables=false",
            "--bridge=none",
            "--data-root",
            str(base / "data"),
            "--exec-root",
            str(base / "exec"),
            "--pidfile",
            str(base / "dockerd.pid"),
            "-H",
            f"unix://{sock}",
        ],  # fmt: skip
        stdout=log,
        stderr=log,
    )
    d = Dockerd(sock, proc)
    try:
        wait_until(lambda: proc.poll() is not None or d.docker("info").returncode == 0, 60, "dockerd")
        assert proc.poll() is None, (base / "dockerd.log").read_text()[-3000:]
        yield d
    finally:
        with contextlib.suppress(Exception):
            ids = d.docker("ps", "-aq").stdout.decode().split()
            if ids:
                d.docker("rm", "-f", *ids)
        stop(proc)
        log.close()


@dataclass
class Containerd:
    """A containerd of the test's own; ``state`` is what Vigil's containerd source reads."""

    address: Path
    state: Path
    proc: subprocess.Popen[bytes]

    def ctr(self, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        cmd = ["ctr", "--address", str(self.address), "--namespace", "k8s.io", *args]
        return subprocess.run(cmd, capture_output=True, timeout=120, **kw)  # type: ignore[call-overload]


@contextlib.contextmanager
def containerd(base: Path, state: Path) -> Iterator[Containerd]:
    base.mkdir(parents=True, exist_ok=True)
    address = base / "containerd.sock"
    config = base / "config.toml"
    config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  disable_apparmor = true\n')
    log = open(base / "containerd.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            "containerd",
            "--config",
            str(config),
            "--root",
            str(base / "root"),
            "--state",
            str(state),
            "--address",
            str(address),
        ],  # fmt: skip
        stdout=log,
        stderr=log,
    )
    c = Containerd(address, state, proc)
    try:
        wait_until(lambda: proc.poll() is not None or c.ctr("version").returncode == 0, 60, "containerd")
        assert proc.poll() is None, (base / "containerd.log").read_text()[-3000:]
        yield c
    finally:
        with contextlib.suppress(Exception):
            for cid in c.ctr("containers", "list", "-q").stdout.decode().split():
                c.ctr("tasks", "kill", "-s", "KILL", cid)
                c.ctr("containers", "delete", cid)
        stop(proc)
        log.close()
