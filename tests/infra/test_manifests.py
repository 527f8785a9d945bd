"""infra/k8s validated offline against the Kubernetes schemas shipped in
kubernetes-validate (strict: unknown fields fail), plus what Vigil needs from
them: a privileged hostPID collector with /sys, a Deployment per service, and
a ConfigMap whose vigil.yaml the settings loader accepts."""

from __future__ import annotations

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
MANIFESTS = ["namespace.yaml", "configmap.yaml", "collector-daemonset.yaml", "services.yaml"]
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
    deployments = {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == "Deployment"}
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
    for path in (rt.containerd.state, rt.crio.socket, rt.crio.graphroot, rt.crio.runroot):
        mount = next((m for m in mounts if PurePosixPath(path).is_relative_to(m["mountPath"])), None)
        assert mount is not None, f"{path} is not mounted in the collector pod"
        assert host[mount["name"]] == mount["mountPath"] and mount.get("readOnly") is True
