"""Real containers from real runtimes are learned with their workload, with no
`vigil workloads add`: podman (runc, its on-disk state), docker (a dockerd the
test starts, its Engine API) and containerd placing a container the way the
Kubernetes CRI plugin does (namespace k8s.io, a kubepods cgroup, the CRI
annotations). Images are built here (infra/host/demo-image.sh); the collector
is the shared one of tests/kernel/conftest.py, reading back from EVENTS.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.events import (
    ContainerStarted,
    ContainerStopped,
    ExecObserved,
    FileOpened,
    RawEvent,
    SyscallsObserved,
)
from contracts.workloads import Workload
from services.profile_learner import core
from tests.kernel.conftest import RUNTIMES_DIR, KernelEnv, of
from tests.kernel.runtimes import PODMAN_RUN, Containerd, Dockerd, containerd, demo_image, dockerd, missing
from tests.sim import Sim

pytestmark = pytest.mark.kernel


def stopped(es: list[RawEvent]) -> bool:
    return any(isinstance(e, ContainerStopped) for e in es)


def registry_entry(env: KernelEnv, cid: str, timeout: float = 10) -> Workload:
    deadline = time.monotonic() + timeout
    while (w := env.collector.registry.get(cid)) is None:
        assert time.monotonic() < deadline, f"{cid[:12]} never reached the workload registry"
        time.sleep(0.05)
    return w


def assert_fully_named(events: list[RawEvent], image: str, tag: str) -> None:
    assert events
    assert {(e.container.image_name, e.container.image_tag) for e in events} == {(image, tag)}  # type: ignore[attr-defined]


def learned(events: list[RawEvent], image: str, tag: str) -> core.Version:
    """The events through the profile-learner's core: the version exists and learned the execs."""
    sim = Sim(core.config())
    sim.feed(*sorted(events, key=lambda e: e.time))
    version = sim.version(image, tag)
    assert version is not None, f"no profile version {image}:{tag} (tags: {sim.tags(image)})"
    return version


# --- podman ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def podman_image() -> str:
    if reason := missing("podman", "runc"):
        pytest.fail(reason)  # CI installs them: a missing runtime there is a failure, not a skip
    return demo_image("podman", "localhost/vigil-test-podman:1.0")


def podman(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["podman", *args], capture_output=True, timeout=120)


def test_podman_container_is_learned_with_image_name_labels_and_no_registration(
    kernel_env: KernelEnv, podman_image: str
) -> None:
    name = f"vigil-web-{secrets.token_hex(3)}"
    run = subprocess.run(
        [*PODMAN_RUN, "-d", "--name", name, "--label", "tier=front", podman_image, "sh", "-c", "sleep 60"],
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    cid = run.stdout.decode().strip()
    try:
        ex = podman("exec", name, "cat", "/etc/hostname")  # busybox's sh runs applets without an exec
        assert ex.returncode == 0, ex.stderr
        events = kernel_env.wait_events(
            lambda es: any(isinstance(e, ExecObserved) and e.process.path.endswith("/cat") for e in es), of(cid)
        )
    finally:
        podman("rm", "-f", "-t", "0", name)
    assert_fully_named(events, "localhost/vigil-test-podman", "1.0")
    w = registry_entry(kernel_env, cid)
    assert (w.source, w.name, w.labels.get("tier"), w.node) == ("podman", name, "front", kernel_env.settings.node_name)
    version = learned(events, "localhost/vigil-test-podman", "1.0")
    assert "/bin/cat" in version.behaviours["exec"], version.behaviours["exec"]
    # stopped: marked, then gone from the registry after collector.identity.stopped_grace (3 s here)
    kernel_env.wait_events(stopped, of(cid, ContainerStopped))
    deadline = time.monotonic() + 30
    while kernel_env.collector.registry.get(cid) is not None:
        assert time.monotonic() < deadline, "a stopped container's entry was never removed"
        time.sleep(0.1)


def test_a_podman_container_that_lives_under_a_second_is_fully_attributed(
    kernel_env: KernelEnv, podman_image: str, tmp_path: Path
) -> None:
    cidfile = tmp_path / "cid"
    t0 = time.monotonic()
    run = subprocess.run(
        [*PODMAN_RUN, "--rm", "--cidfile", str(cidfile), podman_image, "cat", "/etc/hostname"],
        capture_output=True,
        timeout=120,
    )
    took = time.monotonic() - t0
    assert run.returncode == 0, run.stderr
    cid = cidfile.read_text().strip()
    events = kernel_env.wait_events(stopped, of(cid))
    assert_fully_named(events, "localhost/vigil-test-podman", "1.0")
    kinds = [type(e) for e in sorted(events, key=lambda e: e.time) if not isinstance(e, SyscallsObserved)]
    assert kinds[0] is ContainerStarted and kinds[-1] is ContainerStopped  # (syscall sets are stamped at drain)
    execs = {e.process.path for e in events if isinstance(e, ExecObserved)}
    assert "/bin/cat" in execs, execs
    assert any(isinstance(e, FileOpened) and e.file.path == "/etc/hostname" for e in events)
    print(f"podman run --rm took {took:.2f} s")  # the whole container's life, podman's own start-up included


# --- docker ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_daemon(kernel_env: KernelEnv) -> Iterator[Dockerd]:
    if reason := missing("dockerd"):
        pytest.fail(reason)
    with dockerd(RUNTIMES_DIR / "docker") as d:
        env = {"PATH": f"{Path('/usr/bin')}:/usr/sbin:/bin:/sbin", "DOCKER_HOST": f"unix://{d.socket}"}
        demo_image("docker", "localhost/vigil-test-docker:2.0", env=env)
        yield d


def test_docker_containers_are_named_through_the_engine_api(
    kernel_env: KernelEnv, docker_daemon: Dockerd, tmp_path: Path
) -> None:
    run = docker_daemon.docker(
        "run", "-d", "--network", "none", "--name", "vigil-docker-web", "--label", "tier=back",
        "localhost/vigil-test-docker:2.0", "sh", "-c", "sleep 1; cat /etc/hostname; sleep 60",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    cid = run.stdout.decode().strip()
    cidfile = tmp_path / "short.cid"
    short = docker_daemon.docker(
        "run", "--rm", "--cidfile", str(cidfile), "--network", "none", "localhost/vigil-test-docker:2.0",
        "cat", "/etc/hostname",
    )  # fmt: skip
    assert short.returncode == 0, short.stderr
    short_events = kernel_env.wait_events(stopped, of(cidfile.read_text().strip()))
    assert_fully_named(short_events, "localhost/vigil-test-docker", "2.0")
    try:
        events = kernel_env.wait_events(
            lambda es: any(isinstance(e, FileOpened) and e.file.path == "/etc/hostname" for e in es), of(cid)
        )
    finally:
        docker_daemon.docker("rm", "-f", cid)
    assert_fully_named(events, "localhost/vigil-test-docker", "2.0")
    w = registry_entry(kernel_env, cid)
    assert (w.source, w.name, w.labels.get("tier")) == ("docker", "vigil-docker-web", "back")
    learned(events, "localhost/vigil-test-docker", "2.0")


# --- containerd, placed as the Kubernetes CRI plugin places a pod's container -------------------------


@pytest.fixture(scope="module")
def containerd_daemon(kernel_env: KernelEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    if reason := missing("containerd", "ctr", "runc"):
        pytest.fail(reason)
    state = Path(kernel_env.settings.collector.runtimes.containerd.state)
    with containerd(RUNTIMES_DIR / "containerd", state) as c:
        yield c


def cri_run(c: Containerd, rootfs: Path, kind: str, script: str) -> tuple[str, str]:
    """``ctr run`` with the CRI plugin's namespace, cgroup and annotations; returns (id, pod uid)."""
    cid, pod_uid = secrets.token_hex(32), str(uuid.uuid4())
    annotations = {
        "io.kubernetes.cri.container-type": kind,
        "io.kubernetes.cri.sandbox-id": secrets.token_hex(32),
        "io.kubernetes.cri.sandbox-name": "shop-web-0",
        "io.kubernetes.cri.sandbox-namespace": "shop",
        "io.kubernetes.cri.sandbox-uid": pod_uid,
        "io.kubernetes.cri.container-name": "web",
        "io.kubernetes.cri.image-name": "docker.io/library/vigil-shop:2.1",
    }
    flags = [f for k, v in annotations.items() for f in ("--annotation", f"{k}={v}")]
    run = c.ctr(
        "run", "--rm", "--rootfs", "--runtime", "io.containerd.runc.v2",
        "--cgroup", f"/kubepods/besteffort/pod{pod_uid}/{cid}", *flags,
        str(rootfs), cid, "/bin/sh", "-c", script,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return cid, pod_uid


def test_a_cri_placed_containerd_container_gets_its_pod_from_the_annotations(
    kernel_env: KernelEnv, containerd_daemon: Containerd, tmp_path: Path
) -> None:
    rootfs = Path(demo_image("rootfs", str(tmp_path / "rootfs")))
    cid, pod_uid = cri_run(containerd_daemon, rootfs, "container", "cat /etc/hostname; ls /www >/dev/null; sleep 1")
    events = kernel_env.wait_events(stopped, of(cid))
    assert_fully_named(events, "vigil-shop", "2.1")  # docker.io/library/ dropped: the name users write
    assert {(e.container.pod, e.container.namespace, e.container.name) for e in events} == {  # type: ignore[attr-defined]
        ("shop-web-0", "shop", "web")
    }
    w = registry_entry(kernel_env, cid)
    assert (w.source, w.pod_uid) == ("containerd", pod_uid)
    learned(events, "vigil-shop", "2.1")


def test_a_pod_sandbox_is_not_learned_and_is_counted(
    kernel_env: KernelEnv, containerd_daemon: Containerd, tmp_path: Path
) -> None:
    before = kernel_env.collector.hold.dropped["pod_sandbox"]
    rootfs = Path(demo_image("rootfs", str(tmp_path / "rootfs")))
    cid, _ = cri_run(containerd_daemon, rootfs, "sandbox", "cat /etc/hostname; sleep 1")
    deadline = time.monotonic() + 20
    while kernel_env.collector.hold.dropped["pod_sandbox"] == before:
        assert time.monotonic() < deadline, "the sandbox's events were not counted as pod_sandbox"
        time.sleep(0.1)
    assert kernel_env.events(of(cid)) == []
    assert cid in kernel_env.collector.hold.samples["pod_sandbox"]


# --- already running when the collector starts ------------------------------------------------------


def test_containers_running_before_the_collector_starts_are_named_from_the_runtimes_listing(
    kernel_env: KernelEnv, podman_image: str, docker_daemon: Dockerd, tmp_path: Path
) -> None:
    """A collector starting on a busy node: a fresh registry (its own nats-server) is filled
    from the runtimes' own listings, before any event of those containers is seen."""
    from collector.identity import cgroup2_mount
    from collector.runtimes.resolver import Resolver, live_containers
    from collector.workloads import Registry, bucket
    from services.runtime import embedded
    from tests.support import make_settings, open_bus, wait_for

    name = f"vigil-early-{secrets.token_hex(3)}"
    run = subprocess.run([*PODMAN_RUN, "-d", "--name", name, podman_image, "sleep", "60"], capture_output=True)
    assert run.returncode == 0, run.stderr
    early_podman = run.stdout.decode().strip()
    run = docker_daemon.docker("run", "-d", "--network", "none", "localhost/vigil-test-docker:2.0", "sleep", "60")
    assert run.returncode == 0, run.stderr
    early_docker = run.stdout.decode().strip()
    server = embedded.start(tmp_path / "nats", port=-1)
    settings = make_settings(
        tmp_path / "vigil",
        server.url,
        COLLECTOR_RUNTIMES_DOCKER_SOCKET=str(docker_daemon.socket),
        COLLECTOR_RUNTIMES_CONTAINERD_ENABLED="false",
    )

    async def start() -> tuple[list[str], Workload | None, Workload | None]:
        bus = await open_bus(settings)
        reg = Registry()
        kv = await bucket(bus.js)
        await reg.start(kv, bus.nc)
        resolver = Resolver(settings, kv, reg, lambda: live_containers(cgroup2_mount()))
        await resolver.start()
        try:
            await wait_for(lambda: reg.get(early_podman) and reg.get(early_docker), timeout=20)
            return resolver.describe(), reg.get(early_podman), reg.get(early_docker)
        finally:
            await resolver.stop()
            await reg.stop()
            await bus.close()

    try:
        sources, podman_w, docker_w = asyncio.run(start())
    finally:
        podman("rm", "-f", "-t", "0", name)
        docker_daemon.docker("rm", "-f", early_docker)
        server.stop()
    assert any(s.startswith("podman") for s in sources) and any(s.startswith("docker") for s in sources)
    assert podman_w is not None and (podman_w.image_name, podman_w.name, podman_w.source) == (
        "localhost/vigil-test-podman",
        name,
        "podman",
    )
    assert docker_w is not None and (docker_w.image_name, docker_w.image_tag, docker_w.source) == (
        "localhost/vigil-test-docker",
        "2.0",
        "docker",
    )
