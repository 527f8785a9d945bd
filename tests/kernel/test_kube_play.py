"""The deployment artifact, built and run for real: infra/docker/build.sh builds
the image from a locally bootstrapped base (no registry), infra/k8s/play.py
plays the manifests with `podman kube play` (NATS, the service Deployments,
the collector DaemonSet's pod template with its init container and hostPath
mounts), and then, from inside the pods: the collector heartbeats, `vigil
self-test` passes on the kernel path, a real container started on the host
is learned by the learner in its pod. Everything is torn down at the end.

Cached across runs on one machine: the bootstrapped base and the image (keyed
by a hash of the files it is built from), so a second run costs the play
itself (~1 min); a clean machine builds both (~2 min more).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.kernel.runtimes import PODMAN_RUN, demo_image, missing

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/vigil:kube-play-test"
COLLECTOR = "vigil-collector-collector"  # podman names a pod's container <pod>-<container>
LEARNER = "profile-learner-pod-0-profile-learner"
PODS = ["nats-pod-0", "profile-learner-pod-0", "decision-log-archiver-pod-0", "vigil-collector"]
# runc here refuses podman's default rlimits, and kube play has no --ulimit.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""


def sh(*argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def wait(what: str, check: object, timeout: float, logs: object) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s\n{logs()}")  # type: ignore[operator]
        time.sleep(1)


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if reason := missing("podman", "runc", "catatonit", "debootstrap"):
        pytest.fail(reason)  # `make test` installs them (install-test-runtimes.sh): a failure in CI, not a skip
    if running := [p for p in PODS if sh("podman", "pod", "exists", p).returncode == 0]:
        pytest.skip(f"a played stack is up ({', '.join(running)}): `python infra/k8s/play.py down` first")
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env:
        conf = tmp_path_factory.mktemp("podman") / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        env["CONTAINERS_CONF"] = str(conf)
    return env


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str]) -> str:
    started = time.monotonic()
    built = sh("bash", str(ROOT / "infra/docker/build.sh"), IMAGE, timeout=900)
    assert built.returncode == 0, built.stderr[-4000:]
    print(f"\nimage {IMAGE}: {time.monotonic() - started:.0f} s (build.sh: {built.stderr.strip().splitlines()[-1]})")
    return IMAGE


@pytest.fixture(scope="module")
def stack(podman_env: dict[str, str], image: str) -> Iterator[dict[str, str]]:
    play = [sys.executable, str(ROOT / "infra/k8s/play.py")]
    sh(*play, "down", env=podman_env, timeout=300)  # volumes an interrupted run left (no pod is up: checked)
    try:
        up = sh(*play, "up", "--image", image, env=podman_env, timeout=300)
        assert up.returncode == 0, up.stderr[-4000:]
        print(up.stdout)
        yield podman_env
    finally:
        down = sh(*play, "down", env=podman_env, timeout=300)
        print(down.stdout, down.stderr)
        assert down.returncode == 0, down.stderr[-4000:]
        left = sh("podman", "pod", "ps", "-q", "--filter", "label=app.kubernetes.io/part-of=vigil")
        assert not left.stdout.strip(), f"pods left behind: {left.stdout}"


def in_pod(env: dict[str, str], container: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return sh("podman", "exec", container, *argv, env=env, timeout=timeout)


def log_of(env: dict[str, str], container: str, tail: str = "-1") -> str:
    done = sh("podman", "logs", "--tail", tail, container, env=env)
    return done.stdout + done.stderr


def logs(env: dict[str, str], *containers: str) -> str:
    return "\n".join(f"--- {c}\n{log_of(env, c, '30')}" for c in containers)


def test_the_played_stack_runs_the_collector_in_its_pod_passes_the_self_test_and_learns_a_host_container(
    stack: dict[str, str],
) -> None:
    env = stack
    wait(
        "the collector's heartbeat, seen from inside its pod",
        lambda: in_pod(env, COLLECTOR, "vigil", "status", "--require", "collector").returncode == 0,
        180,
        lambda: logs(env, COLLECTOR),
    )
    # It heartbeats while BCC still compiles; the log says which header tree it used, then attached.
    wait("the collector attached", lambda: "eBPF collector attached" in log_of(env, COLLECTOR), 120, lambda: "")
    assert "kernel headers: /" in log_of(env, COLLECTOR)
    assert in_pod(env, COLLECTOR, "id", "-u").stdout.strip() == "0"  # the collector as root
    assert in_pod(env, LEARNER, "id", "-u").stdout.strip() == "10001"  # services not

    test = in_pod(env, COLLECTOR, "vigil", "self-test", "--timeout", "60", timeout=180)
    print(test.stdout)
    assert "Runtime self test: OK" in test.stdout, test.stdout + test.stderr + logs(env, COLLECTOR, LEARNER)
    assert test.stdout.startswith("activity path: kernel"), test.stdout  # the collector saw it, as kubectl exec would

    image = "localhost/vigil-play-demo"
    if sh("podman", "image", "exists", f"{image}:1.0").returncode != 0:
        demo_image("podman", f"{image}:1.0")
    name = f"vigil-play-web-{secrets.token_hex(3)}"
    run = sh(*PODMAN_RUN, "-d", "--name", name, f"{image}:1.0", "httpd", "-f", "-p", "8080", "-h", "/www")
    assert run.returncode == 0, run.stderr
    try:

        def learned() -> bool:
            out = in_pod(env, LEARNER, "vigil", "profiles", "list", "-o", "json").stdout
            return any(json.loads(line).get("image_name") == image for line in out.splitlines() if line.strip())

        wait(f"{image} learned by the profile-learner in its pod", learned, 60, lambda: logs(env, COLLECTOR, LEARNER))
        print(in_pod(env, LEARNER, "vigil", "profiles", "list").stdout)
    finally:
        sh("podman", "rm", "--force", "--time", "1", name)


def test_the_init_container_builds_a_header_tree_on_a_node_without_one(
    image: str, podman_env: dict[str, str], tmp_path: Path
) -> None:
    """The DaemonSet's init container, as it runs on a node with no headers and an
    empty cache: it builds the tree the collector then finds (collector/headers.py);
    the next start finds it there and builds nothing."""
    from collector.headers import CACHE, KCONFIG, find

    (daemonset,) = [
        d
        for d in yaml.safe_load_all((ROOT / "infra/k8s/collector-daemonset.yaml").read_text())
        if d and d["kind"] == "DaemonSet"
    ]
    (init,) = daemonset["spec"]["template"]["spec"]["initContainers"]
    cache = tmp_path / "cache"
    cache.mkdir()
    limits = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]  # as PODMAN_RUN, with a network
    run = ["podman", "--runtime", "runc", "run", "--rm", "--user", "0", *limits, "-v", f"{cache}:{CACHE}"]
    run += [image, *init["command"]]
    first = sh(*run, env=podman_env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "building kernel header tree" in first.stdout, first.stdout
    found = find(env={"VIGIL_KERNEL_HEADERS_CACHE": str(cache)}, root=tmp_path)  # a node with nothing else
    assert found.how == "the header cache" and (found.path / KCONFIG).is_file(), found.describe()  # type: ignore[operator]
    again = sh(*run, env=podman_env, timeout=120)
    assert again.returncode == 0 and "building" not in again.stdout, again.stdout + again.stderr
