"""infra/k8s validated offline against the Kubernetes schemas shipped in
kubernetes-validate (strict: unknown fields fail), plus what Vigil needs from
them: a privileged hostPID collector with /sys and the host's cgroup tree, a
kernel header tree made by its init container, a Deployment per service, a
ConfigMap whose vigil.yaml the settings loader accepts, and a played copy
(infra/k8s/play.py) that differs from them only where podman must.
tests/kernel/test_kube_play.py runs them for real."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) is not installed"
)

from services.registry import SERVICES  # noqa: E402
from services.runtime.settings import load  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
MANIFESTS = ["namespace.yaml", "configmap.yaml", "collector-daemonset.yaml", "services.yaml", "nats.yaml"]
KUBERNETES_VERSION = "1.30.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name in MANIFESTS for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def find(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, kubernetes_validate.latest_version()])
def test_every_manifest_is_valid_against_the_kubernetes_schema(version: str) -> None:
    docs = documents()
    assert len(docs) >= 4 + len(SERVICES)
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_the_validator_catches_a_misplaced_field() -> None:
    doc = find("DaemonSet", "vigil-collector")
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["spec"]["template"]["spec"]["containers"][0]["privilege"] = True  # not a container field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_collector_daemonset_is_privileged_in_the_host_pid_namespace_with_sys_mounted() -> None:
    ds = find("DaemonSet", "vigil-collector")
    pod = ds["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["hostPID"] is True
    assert container["securityContext"]["privileged"] is True
    assert container["command"] == ["vigil", "run", "collector"]
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert host_paths["sys"] == "/sys" and mounts["sys"] == "/sys"
    assert {"/sys/kernel/debug", "/sys/kernel/tracing", "/lib/modules"} <= set(host_paths.values())
    assert any(e["name"] == "VIGIL_COLLECTOR_NODE" for e in container["env"])


def test_one_deployment_per_service_running_that_service() -> None:
    deployments = {d["metadata"]["name"]: d for n, d in documents() if d["kind"] == "Deployment" and n != "nats.yaml"}
    assert set(deployments) == set(SERVICES)
    for name, dep in deployments.items():
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["vigil", "run", name]
        assert container["readinessProbe"]["exec"]["command"] == ["vigil", "status", "--require", name]
        assert not container["securityContext"].get("privileged", False)
    assert deployments["decision-log-archiver"]["spec"]["strategy"]["type"] == "Recreate"  # single DuckDB writer


def test_configmap_vigil_yaml_is_accepted_by_the_settings_loader(tmp_path: Path) -> None:
    text = find("ConfigMap", "vigil-config")["data"]["vigil.yaml"]
    path = tmp_path / "vigil.yaml"
    path.write_text(text)
    settings = load(path, env={}).settings
    assert settings.nats.replicas == 3 and settings.nats.url.startswith("nats://nats.vigil.svc")
    assert settings.runtime_security_config.enabled and settings.collector.source == "ebpf"


def test_helm_values_enable_jetstream_on_a_three_node_cluster() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["cluster"]["enabled"] is True and values["config"]["cluster"]["replicas"] == 3


def test_collector_mounts_the_runtimes_state_where_the_default_settings_read_it() -> None:
    """containerd's task bundles and CRI-O's storage, at the host's own paths and read-only,
    so `collector.runtimes.*` defaults name every container of the node."""
    from pathlib import PurePosixPath

    from services.runtime.settings import Settings

    pod = find("DaemonSet", "vigil-collector")["spec"]["template"]["spec"]
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] in host]
    rt = Settings().collector.runtimes
    paths = (rt.containerd.state, rt.crio.socket, rt.crio.graphroot, rt.crio.runroot)
    for path in paths + (rt.podman.graphroot, rt.podman.runroot, rt.podman.events_log):
        mount = next((m for m in mounts if PurePosixPath(path).is_relative_to(m["mountPath"])), None)
        assert mount is not None, f"{path} is not mounted in the collector pod"
        assert host[mount["name"]] == mount["mountPath"] and mount.get("readOnly") is True


def test_collector_sees_the_hosts_cgroup_tree_over_the_runtimes_own() -> None:
    """The runtime mounts its own /sys/fs/cgroup after /sys (only the pod's cgroup, no
    cgroup2 tree on a v1-hybrid node): the host's must be mounted there explicitly."""
    pod = find("DaemonSet", "vigil-collector")["spec"]["template"]["spec"]
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert host[mounts["/sys/fs/cgroup"]["name"]] == "/sys/fs/cgroup" and mounts["/sys/fs/cgroup"]["readOnly"]


def test_collector_gets_a_kernel_header_tree_on_a_node_without_one() -> None:
    """The node's own headers when it has them (mounted, but neither need exist), else
    the init container's tree in a hostPath cache, at the path the collector reads."""
    from collector.headers import CACHE

    pod = find("DaemonSet", "vigil-collector")["spec"]["template"]["spec"]
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    (init,) = pod["initContainers"]
    assert init["command"][-1] == "--headers" and init["securityContext"]["runAsUser"] == 0
    script = init["command"][1]
    dockerfile = (ROOT / "infra/docker/Dockerfile").read_text()
    assert f"COPY infra/host/install-kernel-deps.sh {script}" in dockerfile
    for container in (init, pod["containers"][0]):
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts[str(CACHE)]] == {"path": str(CACHE), "type": "DirectoryOrCreate"}
        for path in ("/lib/modules", "/usr/src"):
            assert volumes[mounts[path]] == {"path": path, "type": "DirectoryOrCreate"}, path


def test_the_single_node_nats_is_what_the_configmap_points_at() -> None:
    service = find("Service", "nats")
    url = yaml.safe_load(find("ConfigMap", "vigil-config")["data"]["vigil.yaml"])["nats"]["url"]
    host, port = url.removeprefix("nats://").split(":")
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert int(port) == service["spec"]["ports"][0]["port"]
    container = find("Deployment", "nats")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "vigil" and container["command"][0] == "nats-server"


def load_play() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("vigil_k8s_play", K8S / "play.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What infra/k8s/play.py may change in a pod spec (its docstring says why).
PLAYED_CHANGES = re.compile(
    r"^(hostAliases|restartPolicy|volumes\[\d+\]\.name"
    r"|(initContainers|containers)\[\d+\]\.(ports|image|volumeMounts\[\d+\]\.name|env\[\d+\]\.value(From)?))$"
)


def differences(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """Dotted paths where two documents differ (a key only on one side counts)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield path


def test_the_played_manifests_differ_only_where_podman_must() -> None:
    """infra/k8s/play.py's documents are the manifests' but for what its docstring
    lists; anything else a play needs must be fixed in the manifests themselves."""
    play = load_play()
    config = find("ConfigMap", "vigil-config")["data"]["vigil.yaml"]
    assert play.NATS_HOST in yaml.safe_load(config)["nats"]["url"]
    nats, rest = play.workloads("localhost/vigil:x", "10.89.0.9")
    seen: set[str] = set()
    for doc in nats + rest:
        name = doc["metadata"]["name"]
        if doc["kind"] == "Pod":  # the DaemonSet's pod template
            template = find("DaemonSet", name)["spec"]["template"]
            assert doc["metadata"]["labels"] == template["metadata"]["labels"]
            pairs = [(template["spec"], doc["spec"])]
        elif doc["kind"] == "Deployment":
            source = find("Deployment", name)
            pairs = [(source["spec"]["template"]["spec"], doc["spec"]["template"]["spec"])]
            assert list(differences({**source, "spec": None}, {**doc, "spec": None})) == []
            assert list(differences({**source["spec"], "template": None}, {**doc["spec"], "template": None})) == []
        else:
            pairs = [(find(doc["kind"], name), doc)]
        for before, after in pairs:
            changed = list(differences(before, after))
            assert all(PLAYED_CHANGES.match(c) for c in changed), (name, changed)
            seen |= {re.sub(r"\[\d+\]", "[]", c) for c in changed}
    assert {"hostAliases", "restartPolicy", "containers[].ports", "volumes[].name"} <= seen
    played = yaml.safe_load(play.configmap()["data"]["vigil.yaml"])
    assert list(differences(yaml.safe_load(config), played)) == ["nats.replicas"] and played["nats"]["replicas"] == 1
