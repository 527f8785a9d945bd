"""Workload registry entries: container id → workload, stored as JSON in the
NATS KV bucket ``contracts.subjects.WORKLOAD_BUCKET`` under the container id.

Writers: the collector's runtime sources (docker, podman, containerd, CRI-O:
``source`` names the runtime), the collector's ``collector.workloads_file``
and ``vigil workloads add/remove``; all put the same JSON, so the collector
only watches the bucket and never cares who wrote. A runtime source marks a
stopped container (``stopped``) and deletes its entry after a grace period.

Image references are normalised the way users write them
(:func:`parse_image`): ``docker.io/library/nginx:1.25`` and ``nginx:1.25`` are
the same profile.
"""

from __future__ import annotations

import re

import msgspec
from msgspec import Struct

from contracts.events import Container

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_=.-]")


class Workload(Struct, frozen=True, kw_only=True, tag="workload.v1", omit_defaults=True):
    container_id: str
    image_name: str
    image_tag: str = ""
    pod: str = ""
    namespace: str = ""
    name: str = ""  # container name
    source: str = ""  # who registered it: docker, podman, containerd, cri-o (the runtime), file, cli
    pod_uid: str = ""
    labels: dict[str, str] = {}  # the container's labels, as the runtime reports them
    node: str = ""  # the node whose runtime reported it (runtime sources only)
    stopped: int = 0  # wall clock (ns) when the runtime said it stopped; 0 while it runs


_decoder = msgspec.json.Decoder(Workload)
_encoder = msgspec.json.Encoder()


DEFAULT_TAG = "latest"
_DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL = "library/"


def parse_image(ref: str, default_tag: str = DEFAULT_TAG) -> tuple[str, str]:
    """An image reference → (profile name, tag), the name as users write it.

    Docker Hub's domain and its ``library/`` prefix are dropped
    (``docker.io/library/nginx:1.25`` → ``nginx``, ``1.25``); any other
    registry stays part of the name (``localhost/app``, ``registry:5000/app``,
    ``quay.io/org/app``). No tag means ``latest``; a digest-only reference keeps
    its digest as the tag (``app@sha256:…`` → ``sha256:…``); a tag and a digest
    keep the tag. ``default_tag=""`` leaves "no tag" as ``""`` (any tag).
    """
    ref = ref.strip()
    name, _, digest = ref.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return normalize_name(name), tag or digest or default_tag


def normalize_name(name: str) -> str:
    """A repository name in its familiar form (Docker's ``FamiliarName``)."""
    first, sep, rest = name.partition("/")
    if sep and (first == "localhost" or "." in first or ":" in first or first != first.lower()):
        if first not in (_DEFAULT_DOMAIN, _LEGACY_DOMAIN):
            return name  # another registry: its host is part of the name
        name = rest
    if name.startswith(_OFFICIAL) and "/" not in name[len(_OFFICIAL) :]:
        return name[len(_OFFICIAL) :]
    return name


def container_of(w: Workload, cgroup_id: int = 0, container_id: str = "") -> Container:
    """The identity an event of this workload's container carries (``container_id``:
    the full id when ``w`` was registered under a short one)."""
    return Container(
        id=container_id or w.container_id,
        image_name=w.image_name,
        image_tag=w.image_tag,
        pod=w.pod,
        namespace=w.namespace,
        name=w.name,
        cgroup_id=cgroup_id,
    )


def key(container_id: str) -> str:
    return _KEY_UNSAFE.sub("_", container_id)


def encode(w: Workload) -> bytes:
    return _encoder.encode(w)


def decode(data: bytes) -> Workload:
    return _decoder.decode(data)
