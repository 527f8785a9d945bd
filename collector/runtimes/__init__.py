"""Container runtimes as sources of workload identity.

The kernel names a container only by its cgroup; the runtime that made it
knows its image, name, labels and, on a Kubernetes node, its pod. A source
reads one runtime's own view (an API socket or its on-disk state) and reports
what it sees; :class:`collector.runtimes.resolver.Resolver` writes it to the
workload registry (KV ``vigil_workloads``), which the collector watches.

Invariants:
- a source never raises out of :meth:`Source.run` for one bad container: an
  unreadable entry is skipped and logged; a runtime that goes away is retried;
- what a source reports is pure data (:class:`Seen`): the mapping from the
  runtime's documents to a :class:`~contracts.workloads.Workload` lives in
  pure functions next to each source and is table-tested;
- a container the runtime knows but that Vigil should not learn (a pod's
  sandbox) or cannot (no image) is reported as :class:`Skipped` with its
  cause, so the collector can count why its events were not published.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from msgspec import Struct

from collector.runtimes.kubernetes import Pod
from contracts.workloads import Workload, parse_image

# Why a container's events were not published (collector counters ``unresolved_<cause>``,
# ``unknown_layout``), each with what an operator can do about it (`vigil status`).
POD_SANDBOX = "pod_sandbox"
NO_IMAGE = "no_image"
NO_SOURCE = "no_runtime_source"
NOT_FOUND = "not_found"
HOLD_OVERFLOW = "hold_overflow"
UNKNOWN_LAYOUT = "unknown_layout"
HINTS = {
    NOT_FOUND: "its runtime did not name it within collector.identity.hold: raise the hold, or see the "
    "collector's log for the runtime source",
    NO_SOURCE: "no runtime source serves its runtime: enable collector.runtimes.<runtime> (socket or state "
    "mounted?) or name it yourself: vigil workloads add ID --image IMAGE",
    NO_IMAGE: "its runtime knows no image for it (containerd outside Kubernetes): vigil workloads add ID --image IMAGE",
    POD_SANDBOX: "pods' sandbox (pause) containers are not learned, by design",
    HOLD_OVERFLOW: "more than collector.identity.hold_events events waited at once: raise it",
    UNKNOWN_LAYOUT: "the cgroup looks like a container's but matches no known layout (docs/collector.md): "
    "please report the path",
}


class Skipped(Struct, frozen=True):
    container_id: str
    runtime: str
    cause: str  # POD_SANDBOX | NO_IMAGE


Seen = Workload | Skipped


def seen(
    container_id: str,
    runtime: str,
    node: str,
    image: str,
    pod: Pod,
    name: str = "",
    labels: Mapping[str, str] = {},
) -> Seen:
    """What a source found, once its runtime's documents are read: a sandbox and an
    image-less container are skipped with their cause; the rest is a workload,
    its image reference normalised (:func:`contracts.workloads.parse_image`)."""
    if pod.sandbox:
        return Skipped(container_id, runtime, POD_SANDBOX)
    if not image:
        return Skipped(container_id, runtime, NO_IMAGE)
    image_name, tag = parse_image(image)
    return Workload(
        container_id=container_id,
        image_name=image_name,
        image_tag=tag,
        pod=pod.pod,
        namespace=pod.namespace,
        pod_uid=pod.pod_uid,
        name=pod.container or name,
        labels=dict(labels),
        source=runtime,
        node=node,
    )


class Sink(Protocol):
    """Where a source reports: the resolver."""

    async def seen(self, found: Seen) -> None: ...

    async def gone(self, container_id: str) -> None: ...


class Source(Protocol):
    """One runtime's view of its containers."""

    runtime: str  # docker | podman | containerd | cri-o
    where: str  # the socket or directory it reads (logs, ``vigil status``)

    def serves(self, runtime: str) -> bool:
        """Whether a container of this runtime (from the cgroup layout) may be found here."""
        ...

    async def run(self, sink: Sink) -> None:
        """Report every container present now, then every change, until cancelled."""
        ...

    async def lookup(self, container_id: str) -> Seen | None:
        """Ask about one container now (an unknown cgroup was seen)."""
        ...

    async def close(self) -> None: ...


Opener = Callable[[], Awaitable[Source | None]]
