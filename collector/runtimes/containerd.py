"""containerd from its on-disk task state: every running task has a bundle
directory ``<state>/io.containerd.runtime.v2.task/<namespace>/<id>/`` whose
``config.json`` is the OCI spec given to runc, written before the container's
process starts. The CRI plugin puts the pod's identity and the image name in
its annotations (:mod:`collector.runtimes.kubernetes`), so a Kubernetes node
needs neither the containerd gRPC API nor the API server.

Invariants:
- polled: one directory listing per namespace per poll; a bundle is read once;
  :meth:`ContainerdSource.lookup` reads a bundle at once;
- namespace ``moby`` is dockerd's (the docker source names those);
- a task without CRI annotations has no image in its bundle: reported as
  :data:`~collector.runtimes.NO_IMAGE` (register it with ``vigil workloads add``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path

from collector.identity import ANY
from collector.runtimes import Seen, Sink, seen
from collector.runtimes.kubernetes import pod_of

log = logging.getLogger("vigil.collector.runtimes")

TASK_DIRS = ("io.containerd.runtime.v2.task", "io.containerd.runtime.v1.linux")
DOCKER_NAMESPACE = "moby"
RUNTIME = "containerd"


def seen_of(container_id: str, namespace: str, annotations: Mapping[str, str], node: str) -> Seen:
    """A task's namespace and OCI annotations → what Vigil registers."""
    pod = pod_of(annotations)
    return seen(container_id, RUNTIME, node, pod.image, pod, labels={"io.containerd.namespace": namespace})


class ContainerdSource:
    def __init__(self, state: str, node: str, poll: float = 0.25) -> None:
        self.runtime = RUNTIME
        self.where = state
        self.roots = [Path(state) / d for d in TASK_DIRS]
        self.node = node
        self.poll = poll
        self._known: dict[str, Seen] = {}

    def serves(self, runtime: str) -> bool:
        return runtime in (RUNTIME, ANY)

    def _bundles(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for root in self.roots:
            try:
                namespaces = [n for n in root.iterdir() if n.name != DOCKER_NAMESPACE]
            except OSError:
                continue
            for ns in namespaces:
                try:
                    out.update((b.name, b) for b in ns.iterdir())
                except OSError:
                    continue
        return out

    def _read(self, container_id: str, bundle: Path) -> Seen | None:
        try:
            spec = json.loads((bundle / "config.json").read_text())
        except (OSError, ValueError):
            return None  # not written yet, or gone: asked again on the next poll or lookup
        annotations = {str(k): str(v) for k, v in (spec.get("annotations") or {}).items()}
        return seen_of(container_id, bundle.parent.name, annotations, self.node)

    async def lookup(self, container_id: str) -> Seen | None:
        if container_id in self._known:
            return self._known[container_id]
        bundle = self._bundles().get(container_id)
        return self._read(container_id, bundle) if bundle is not None else None

    async def run(self, sink: Sink) -> None:
        log.info("containerd: following %s", self.where)
        while True:
            bundles = self._bundles()
            for cid in [c for c in self._known if c not in bundles]:
                del self._known[cid]
                await sink.gone(cid)
            for cid, bundle in bundles.items():
                if cid not in self._known and (found := self._read(cid, bundle)) is not None:
                    self._known[cid] = found
                    await sink.seen(found)
            await asyncio.sleep(self.poll)

    async def close(self) -> None:
        return None
