"""Workload registry entries: container id → workload, stored as JSON in the
NATS KV bucket ``contracts.subjects.WORKLOAD_BUCKET`` under the container id.

Writers: the collector (from ``collector.workloads_file``), ``vigil workloads
add/remove``, and later a Kubernetes/CRI watcher; all put the same JSON, so
the collector only watches the bucket and never cares who wrote.
"""

from __future__ import annotations

import re

import msgspec
from msgspec import Struct

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_=.-]")


class Workload(Struct, frozen=True, kw_only=True, tag="workload.v1", omit_defaults=True):
    container_id: str
    image_name: str
    image_tag: str = ""
    pod: str = ""
    namespace: str = ""
    name: str = ""  # container name
    source: str = ""  # who registered it: file, cli, cri, k8s


_decoder = msgspec.json.Decoder(Workload)
_encoder = msgspec.json.Encoder()


def split_image(image: str) -> tuple[str, str]:
    """``registry:5000/app:1.2`` → (``registry:5000/app``, ``1.2``); digests kept as tags."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, ""


def key(container_id: str) -> str:
    return _KEY_UNSAFE.sub("_", container_id)


def encode(w: Workload) -> bytes:
    return _encoder.encode(w)


def decode(data: bytes) -> Workload:
    return _decoder.decode(data)
