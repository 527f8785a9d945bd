"""What each runtime writes about a container → the workload Vigil registers.

The keys are the runtimes' own (cited): containerd's CRI annotations
(containerd/containerd internal/cri/annotations/annotations.go @
301026e58c619e63d09c0ec411012e54c0124b03; image-name since v1.5.0,
sandbox-uid since v1.6.11), CRI-O's (cri-o/cri-o internal/annotations/annotations.go
and internal/storage/runtime.go @ f954a17e505f8931e91004403b5f5eac71ab6085: it
copies the kubelet's labels in as annotations and writes config.json under both
storage roots), the kubelet's labels (kubernetes/kubernetes
pkg/kubelet/types/labels.go @ 112d7df89667629278fb4b2e89191bd69fb3d365) and
cri-dockerd's (Mirantis/cri-dockerd core/naming.go @ 246bd65780eb7a9ed294192474d6015330aa8048).
The podman documents are what podman 4.3 wrote on these machines.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from collector.runtimes import NO_IMAGE, POD_SANDBOX, Seen, Skipped
from collector.runtimes.containerd import ContainerdSource
from collector.runtimes.containerd import seen_of as containerd_seen
from collector.runtimes.engine import workload_of
from collector.runtimes.kubernetes import pod_of
from collector.runtimes.storage import StorageSource, labels_from_events, parse_index
from collector.runtimes.storage import seen_of as storage_seen
from contracts.workloads import Workload

A, B, C = "a" * 64, "b" * 64, "c" * 64
POD_UID = "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab"

CRI_CONTAINER = {
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.sandbox-id": B,
    "io.kubernetes.cri.sandbox-name": "web-0",
    "io.kubernetes.cri.sandbox-namespace": "shop",
    "io.kubernetes.cri.sandbox-uid": POD_UID,
    "io.kubernetes.cri.container-name": "nginx",
    "io.kubernetes.cri.image-name": "docker.io/library/nginx:1.25",
}
CRIO_CONTAINER = {
    "io.container.manager": "cri-o",
    "io.kubernetes.cri-o.ContainerType": "container",
    "io.kubernetes.cri-o.Image": "quay.io/shop/api:3.1",
    "io.kubernetes.cri-o.ImageName": "quay.io/shop/api:3.1",
    "io.kubernetes.cri-o.Name": f"k8s_api_api-7d9f_shop_{POD_UID}_0",
    "io.kubernetes.pod.name": "api-7d9f",
    "io.kubernetes.pod.namespace": "shop",
    "io.kubernetes.pod.uid": POD_UID,
    "io.kubernetes.container.name": "api",
}
PODMAN_ANNOTATIONS = {  # podman 4.3's config.json on these machines
    "io.container.manager": "libpod",
    "io.kubernetes.cri-o.Created": "2026-12-07T00:34:50.42324931Z",
    "io.kubernetes.cri-o.TTY": "false",
    "io.podman.annotations.autoremove": "FALSE",
    "org.opencontainers.image.stopSignal": "15",
}


def test_pod_identity_from_containerd_cri_annotations() -> None:
    assert containerd_seen(A, "k8s.io", CRI_CONTAINER, "n1") == Workload(
        container_id=A,
        image_name="nginx",
        image_tag="1.25",
        pod="web-0",
        namespace="shop",
        pod_uid=POD_UID,
        name="nginx",
        labels={"io.containerd.namespace": "k8s.io"},
        source="containerd",
        node="n1",
    )


def test_containerd_sandbox_and_imageless_task_are_skipped_with_their_cause() -> None:
    sandbox = {**CRI_CONTAINER, "io.kubernetes.cri.container-type": "sandbox"}
    assert containerd_seen(B, "k8s.io", sandbox, "n1") == Skipped(B, "containerd", POD_SANDBOX)
    assert containerd_seen(C, "default", {}, "n1") == Skipped(C, "containerd", NO_IMAGE)  # ctr run, no CRI


def test_pod_identity_from_crio_annotations_and_the_kubelet_labels() -> None:
    pod = pod_of(CRIO_CONTAINER)
    assert (pod.pod, pod.namespace, pod.pod_uid, pod.container, pod.image, pod.sandbox) == (
        "api-7d9f",
        "shop",
        POD_UID,
        "api",
        "quay.io/shop/api:3.1",
        False,
    )
    assert pod_of({"io.kubernetes.cri-o.ContainerType": "sandbox"}).sandbox
    assert pod_of({}, {"io.kubernetes.docker.type": "podsandbox"}).sandbox  # cri-dockerd
    # CRI-O's ImageName may be "" (the image named by id); the user's reference comes first
    assert pod_of({"io.kubernetes.cri-o.Image": "app:1", "io.kubernetes.cri-o.ImageName": ""}).image == "app:1"


def docker_inspect(labels: dict[str, str], image: str = "nginx:1.25") -> dict[str, object]:
    return {"Id": A, "Name": "/web", "Image": "sha256:" + "f" * 64, "Config": {"Image": image, "Labels": labels}}


def test_engine_inspect_document_to_workload() -> None:
    w = workload_of(docker_inspect({"tier": "front"}), "docker", "n1")
    assert w == Workload(
        container_id=A,
        image_name="nginx",
        image_tag="1.25",
        name="web",
        labels={"tier": "front"},
        source="docker",
        node="n1",
    )
    k8s = workload_of(
        docker_inspect(
            {
                "io.kubernetes.pod.name": "web-0",
                "io.kubernetes.pod.namespace": "shop",
                "io.kubernetes.pod.uid": POD_UID,
                "io.kubernetes.container.name": "nginx",
                "io.kubernetes.docker.type": "container",
            },
            "docker.io/library/nginx:1.25",
        ),
        "docker",
        "n1",
    )
    assert isinstance(k8s, Workload) and (k8s.pod, k8s.namespace, k8s.pod_uid, k8s.name) == (
        "web-0",
        "shop",
        POD_UID,
        "nginx",
    )


def test_engine_sandbox_and_image_ids() -> None:
    assert workload_of(docker_inspect({"io.kubernetes.docker.type": "podsandbox"}), "docker", "n1") == Skipped(
        A, "docker", POD_SANDBOX
    )
    assert workload_of(docker_inspect({}, "sha256:" + "e" * 64), "docker", "n1") == Skipped(A, "docker", NO_IMAGE)
    named = workload_of(docker_inspect({}, "e" * 64), "docker", "n1", image="localhost/app:2")
    assert isinstance(named, Workload) and (named.image_name, named.image_tag) == ("localhost/app", "2")


def podman_entry(cid: str, image: str, name: str) -> dict[str, object]:
    meta = {"image-name": image, "image-id": "f" * 64, "name": name, "created-at": 1796603690}
    return {"id": cid, "names": [name], "image": "f" * 64, "metadata": json.dumps(meta)}


def test_containers_json_entries_podman_and_crio() -> None:
    crio_meta = {
        "pod-name": f"k8s_api-7d9f_shop_{POD_UID}_0",  # the sandbox name, not the pod's
        "pod-id": B,
        "image-name": "quay.io/shop/api:3.1",
        "name": f"k8s_api_api-7d9f_shop_{POD_UID}_0",
        "metadata-name": "api",
    }
    text = json.dumps(
        [podman_entry(A, "localhost/vigil-demo:1.0", "demo1"), {"id": C, "metadata": json.dumps(crio_meta)}, {"x": 1}]
    )
    podman, crio = parse_index(text, Path("/s/overlay-containers"))
    assert storage_seen(podman, PODMAN_ANNOTATIONS, {"app": "web"}, "n1") == Workload(
        container_id=A,
        image_name="localhost/vigil-demo",
        image_tag="1.0",
        name="demo1",
        labels={"app": "web"},
        source="podman",
        node="n1",
    )
    w = storage_seen(crio, CRIO_CONTAINER, {}, "n1")
    assert isinstance(w, Workload)
    assert (w.source, w.image_name, w.image_tag, w.pod, w.namespace, w.name) == (
        "cri-o",
        "quay.io/shop/api",
        "3.1",
        "api-7d9f",
        "shop",
        "api",
    )


def test_podman_labels_from_its_event_log() -> None:
    lines = [
        b'{"Status":"refresh","Type":"system","Attributes":null}',
        b'{"ID":"' + A.encode() + b'","Image":"localhost/vigil-demo:1.0","Name":"demo1","Status":"create",'
        b'"Type":"container","Attributes":{"app":"web","team":"sec"}}',
        b"not json",
        b'{"ID":"' + B.encode() + b'","Status":"create","Type":"container","Attributes":{"x":"1"}}',
        b'{"ID":"' + B.encode() + b'","Status":"remove","Type":"container","Attributes":{}}',
    ]
    labels: dict[str, dict[str, str]] = {}
    labels_from_events(lines, labels)
    assert labels == {A: {"app": "web", "team": "sec"}}


class Recorder:
    def __init__(self) -> None:
        self.found: list[Seen] = []
        self.removed: list[str] = []

    async def seen(self, found: Seen) -> None:
        self.found.append(found)

    async def gone(self, container_id: str) -> None:
        self.removed.append(container_id)


async def poll_once(source: object, sink: Recorder, seconds: float = 0.15) -> None:
    task = asyncio.create_task(source.run(sink))  # type: ignore[attr-defined]
    await asyncio.sleep(seconds)
    task.cancel()


def test_podman_on_disk_state_is_followed(tmp_path: Path) -> None:
    graph, run = tmp_path / "graph", tmp_path / "run"
    index = graph / "overlay-containers" / "containers.json"
    index.parent.mkdir(parents=True)
    (index.parent / A / "userdata").mkdir(parents=True)
    (index.parent / A / "userdata" / "config.json").write_text(json.dumps({"annotations": PODMAN_ANNOTATIONS}))
    events = tmp_path / "events.log"
    events.write_text(
        json.dumps({"ID": A, "Status": "create", "Type": "container", "Attributes": {"app": "web"}}) + "\n"
    )
    index.write_text(json.dumps([podman_entry(A, "docker.io/library/redis:7", "cache")]))
    source = StorageSource({"podman"}, str(graph), str(run), "n1", str(events), poll=0.02)
    sink = Recorder()

    async def go() -> None:
        assert await source.lookup(A) == Workload(
            container_id=A,
            image_name="redis",
            image_tag="7",
            name="cache",
            labels={"app": "web"},
            source="podman",
            node="n1",
        )
        assert await source.lookup(B) is None
        await poll_once(source, sink)
        index.write_text("[]")  # removed (podman rm)
        await poll_once(source, sink)

    asyncio.run(go())
    assert [f.container_id for f in sink.found] == [A]  # type: ignore[union-attr]
    assert sink.removed == [A]


def test_a_half_written_containers_json_is_read_again_later(tmp_path: Path) -> None:
    index = tmp_path / "graph" / "overlay-containers" / "containers.json"
    index.parent.mkdir(parents=True)
    index.write_text('[{"id": "')
    source = StorageSource({"podman"}, str(tmp_path / "graph"), str(tmp_path / "run"), "n1", poll=0.02)

    async def go() -> Seen | None:
        assert await source.lookup(A) is None
        index.write_text(json.dumps([podman_entry(A, "app:1", "x")]))
        return await source.lookup(A)

    found = asyncio.run(go())
    assert isinstance(found, Workload) and found.image_name == "app"


def test_containerd_task_bundles_are_followed_and_dockers_namespace_is_left_to_docker(tmp_path: Path) -> None:
    tasks = tmp_path / "io.containerd.runtime.v2.task"
    for ns, cid, spec in (("k8s.io", A, CRI_CONTAINER), ("moby", B, {}), ("default", C, {})):
        (tasks / ns / cid).mkdir(parents=True)
        (tasks / ns / cid / "config.json").write_text(json.dumps({"annotations": spec}))
    source = ContainerdSource(str(tmp_path), "n1", poll=0.02)
    sink = Recorder()

    async def go() -> None:
        assert await source.lookup(B) is None
        await poll_once(source, sink)
        (tasks / "k8s.io" / A / "config.json").unlink()
        (tasks / "k8s.io" / A).rmdir()
        await poll_once(source, sink)

    asyncio.run(go())
    found = {(f.container_id, type(f).__name__) for f in sink.found}  # type: ignore[union-attr]
    assert found == {(A, "Workload"), (C, "Skipped")}
    assert sink.removed == [A]
