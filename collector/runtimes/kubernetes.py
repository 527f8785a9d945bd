"""Kubernetes identity from what the CRI runtimes write on each container, so a
node needs no API-server access.

Keys (each runtime's own constants; tests/unit/test_runtime_metadata.py cites them):
- containerd's CRI plugin: OCI annotations ``io.kubernetes.cri.*``
  (``container-type`` ``container``/``sandbox``, ``sandbox-name``,
  ``sandbox-namespace``, ``sandbox-uid``, ``container-name``, ``image-name``);
- CRI-O: OCI annotations ``io.kubernetes.cri-o.ContainerType`` /
  ``…Image`` (the user's reference) / ``…ImageName``, and the kubelet's labels
  copied in as annotations (``io.kubernetes.pod.*``, ``io.kubernetes.container.name``);
- the kubelet's labels on every CRI container (containerd, CRI-O, cri-dockerd):
  ``io.kubernetes.pod.name``, ``…pod.namespace``, ``…pod.uid``,
  ``io.kubernetes.container.name``; cri-dockerd marks sandboxes with
  ``io.kubernetes.docker.type: podsandbox``.

Pure functions over plain mappings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

CRI = "io.kubernetes.cri."
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
CRIO_TYPE = "io.kubernetes.cri-o.ContainerType"
CRIO_IMAGE = "io.kubernetes.cri-o.Image"  # the image as the user asked for it
CRIO_IMAGE_NAME = "io.kubernetes.cri-o.ImageName"  # "some name of the image", maybe ""
DOCKER_TYPE = "io.kubernetes.docker.type"
SANDBOX_TYPES = {"sandbox", "podsandbox"}


class Pod(NamedTuple):
    pod: str = ""
    namespace: str = ""
    pod_uid: str = ""
    container: str = ""
    image: str = ""  # the image reference the CRI request named, when the runtime recorded it
    sandbox: bool = False  # the pod's infrastructure ("pause") container


def pod_of(annotations: Mapping[str, str], labels: Mapping[str, str] = {}) -> Pod:
    """The pod a container belongs to, from its annotations, else its labels."""
    a, lab = annotations, labels

    def first(*keys: str) -> str:
        for source in (a, lab):
            for k in keys:
                if source.get(k):
                    return str(source[k])
        return ""

    kind = first(CRI + "container-type", CRIO_TYPE, DOCKER_TYPE)
    return Pod(
        pod=first(CRI + "sandbox-name", POD_NAME),
        namespace=first(CRI + "sandbox-namespace", POD_NAMESPACE),
        pod_uid=first(CRI + "sandbox-uid", POD_UID),
        container=first(CRI + "container-name", CONTAINER_NAME),
        image=first(CRI + "image-name", CRIO_IMAGE, CRIO_IMAGE_NAME),
        sandbox=kind in SANDBOX_TYPES,
    )
