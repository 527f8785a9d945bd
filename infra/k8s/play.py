"""Play infra/k8s on one machine with podman (no cluster, no registry), as root.

    .venv/bin/python infra/k8s/play.py up [--image REF]   # REF: default `vigil` (localhost/vigil:latest)
    .venv/bin/python infra/k8s/play.py down               # pods and their volumes removed

Plays nats.yaml, configmap.yaml, services.yaml and the collector DaemonSet's pod
template with `podman kube play` (podman 4.3 plays Pods, Deployments and
PersistentVolumeClaims; ConfigMaps come with --configmap). The manifests are
played as they are, except for what a cluster provides and podman does not:

- no DaemonSet controller: the collector's pod template is played as a Pod;
- no cluster DNS: each pod gets a hosts entry (hostAliases) for the NATS
  Service's name, pointing at the NATS pod;
- one NATS server (nats.yaml), not the Helm chart's three: the played
  ConfigMap says ``nats.replicas: 1``;
- podman 4 publishes every containerPort on the host (Kubernetes never does;
  seven pods would fight over 9464): the informational ``ports`` lists are left out;
- no downward API for ``spec.nodeName`` in podman 4.3: the variable is given
  this machine's host name, the node's name in a cluster;
- podman 4.3 applies restartPolicy Always to init containers too (the headers
  step would run again and again): the collector pod restarts OnFailure;
- podman 4.3 makes an emptyDir a named volume called after the volume (every
  pod's "data" would be one volume, kept after the pods): each is renamed
  ``<pod>-<volume>`` and removed by ``down``.

Hosts whose default rlimits runc refuses (these VMs) need ``default_ulimits`` in
containers.conf (tests/kernel/test_kube_play.py sets it with CONTAINERS_CONF).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

K8S = Path(__file__).resolve().parent
NATS_HOST = "nats.vigil.svc.cluster.local"
NATS_POD = "nats-pod-0"  # podman names a Deployment's pod <name>-pod-<n>


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] == "Pod":
        return doc["spec"]  # type: ignore[no-any-return]
    if doc["kind"] == "Deployment":
        return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return None


def pod_name(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["name"]) + ("-pod-0" if doc["kind"] == "Deployment" else "")


def as_pod(daemonset: dict[str, Any]) -> dict[str, Any]:
    template = daemonset["spec"]["template"]
    meta = {"name": daemonset["metadata"]["name"], "namespace": daemonset["metadata"]["namespace"]}
    spec = {**template["spec"], "restartPolicy": "OnFailure"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {**template["metadata"], **meta}, "spec": spec}


def adapt(doc: dict[str, Any], image: str, nats_ip: str | None) -> dict[str, Any]:
    """``doc`` as podman 4.3 can play it (see the module docstring); other kinds unchanged."""
    spec = pod_spec(doc)
    if spec is None:
        return doc
    for c in spec.get("initContainers", []) + spec["containers"]:
        c.pop("ports", None)
        if c["image"] == "vigil":
            c["image"] = image
        for env in c.get("env", []):
            if env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                env["value"] = socket.gethostname()
                del env["valueFrom"]
    renamed = {v["name"]: f"{pod_name(doc)}-{v['name']}" for v in spec.get("volumes", []) if "emptyDir" in v}
    for v in spec.get("volumes", []):
        v["name"] = renamed.get(v["name"], v["name"])
    for c in spec.get("initContainers", []) + spec["containers"]:
        for m in c.get("volumeMounts", []):
            m["name"] = renamed.get(m["name"], m["name"])
    if nats_ip:
        spec["hostAliases"] = [{"ip": nats_ip, "hostnames": [NATS_HOST]}]
    return doc


def configmap() -> dict[str, Any]:
    (cm,) = load("configmap.yaml")
    settings = yaml.safe_load(cm["data"]["vigil.yaml"])
    settings["nats"]["replicas"] = 1
    cm["data"]["vigil.yaml"] = yaml.safe_dump(settings, sort_keys=False)
    return cm


def workloads(image: str, nats_ip: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(NATS documents, everything else): PVCs and Deployments, the collector as a Pod."""
    nats = [adapt(d, image, None) for d in load("nats.yaml") if d["kind"] != "Service"]
    rest = load("services.yaml")
    rest += [as_pod(d) for d in load("collector-daemonset.yaml") if d["kind"] == "DaemonSet"]
    return nats, [adapt(d, image, nats_ip) for d in rest]


def volumes(docs: list[dict[str, Any]]) -> list[str]:
    """The podman volumes playing ``docs`` creates: claims, renamed emptyDirs, ConfigMaps."""
    out = [d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"]
    for d in docs:
        for v in (pod_spec(d) or {}).get("volumes", []):
            if "emptyDir" in v:
                out.append(v["name"])
            elif "configMap" in v:
                out.append(v["configMap"]["name"])
    return sorted(set(out))


RLIMITS_HINT = (
    "runc refused podman's default rlimits (higher than this host's hard limits; kube play has no --ulimit): "
    'put default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"] under [containers] in '
    "/etc/containers/containers.conf (or a file named by CONTAINERS_CONF), then `play.py down` and `play.py up`"
)


def podman(*args: str, check: bool = True) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        hint = f"\n{RLIMITS_HINT}" if "error setting rlimit" in done.stderr else ""
        raise SystemExit(f"podman {' '.join(args[:3])}: {done.stderr.strip()[-2000:]}{hint}")
    return done.stdout.strip()


def play(docs: list[dict[str, Any]], cm: Path) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
        f.flush()
        podman("kube", "play", "--configmap", str(cm), f.name)


def pod_ip(pod: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", pod)
        ip = podman("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", infra)
        if ip or time.monotonic() > deadline:
            return ip
        time.sleep(0.5)


def up(image: str) -> None:
    if subprocess.call(["podman", "image", "exists", image]) != 0:
        raise SystemExit(f"no image {image}: build it first (bash infra/docker/build.sh)")
    nats, rest = workloads(image, None)
    if left := [v for v in volumes(nats + rest) if subprocess.call(["podman", "volume", "exists", v]) == 0]:
        # podman 4.3 refuses to play a claim whose volume exists (a cluster would bind it again).
        raise SystemExit(f"volumes of an earlier play are left ({', '.join(left)}): `play.py down` removes them")
    with tempfile.TemporaryDirectory() as tmp:
        cm = Path(tmp) / "configmap.yaml"
        cm.write_text(yaml.safe_dump(configmap(), sort_keys=False))
        nats, _ = workloads(image, None)
        play(nats, cm)
        ip = pod_ip(NATS_POD)
        _, rest = workloads(image, ip)
        play(rest, cm)
    print(podman("pod", "ps", "--filter", "label=app.kubernetes.io/part-of=vigil"))


def down() -> None:
    nats, rest = workloads("vigil", None)
    pods = [pod_name(d) for d in nats + rest if pod_spec(d) is not None]
    present = [p for p in pods if subprocess.call(["podman", "pod", "exists", p]) == 0]
    if present:
        podman("pod", "kill", *present, check=False)  # everything goes, volumes too: no drain needed
        podman("pod", "rm", "--force", *present)
    gone = [v for v in volumes(nats + rest) if subprocess.call(["podman", "volume", "exists", v]) == 0]
    if gone:
        podman("volume", "rm", "--force", *gone)
    print(f"removed pods: {', '.join(present) or 'none'}; volumes: {', '.join(gone) or 'none'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--image", default="vigil", help="the Vigil image (default vigil: localhost/vigil:latest)")
    args = parser.parse_args(argv)
    if args.action == "up":
        up(args.image)
    else:
        down()


if __name__ == "__main__":
    main()
