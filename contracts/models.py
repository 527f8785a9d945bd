"""Behaviour modelling (MODELS stream, JSON): requests, their status, and the model document.

A modelling request (:class:`StartModeling`) names a workload selector (image,
optional tag, optional container names) and a duration in *event time*. The
audit-report-writer folds what the selected containers did inside
``[start, start + duration)`` and, when its event-time watermark passes the
end, writes the :class:`BehaviourModel` and the AppArmor and seccomp profiles
generated from it, then publishes ``Completed`` (or ``Error`` with a reason).

Status follows vArmor's BehaviorModeling: ``Modeling`` → ``Completed`` | ``Error``.

Per-container opt-out mirrors vArmor's annotation: a request annotation
``container.models.vigil.dev/<container name>: unconfined`` excludes that
container from the model (see :data:`OPT_OUT_PREFIX`).

Invariants: every struct is frozen and tagged; new fields only with defaults;
lists inside a model are sorted so the same behaviour gives the same bytes.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

ModelStatus = Literal["Modeling", "Completed", "Error"]
MODEL_STATUSES: tuple[ModelStatus, ...] = ("Modeling", "Completed", "Error")

OPT_OUT_PREFIX = "container.models.vigil.dev/"
OPT_OUT_VALUE = "unconfined"

CAPABILITIES_UNKNOWN = (
    "capabilities are not captured on this kernel (no kprobes/fentry to hook cap_capable); "
    "the generated AppArmor profile grants none"
)


class _ModelMessage(Struct, frozen=True, kw_only=True, tag_field="kind", omit_defaults=True):
    id: str
    time: int  # event time, ns


class StartModeling(_ModelMessage, frozen=True, kw_only=True, tag="models.start.v1"):
    """Command: model ``image_name[:image_tag]`` for ``duration`` ns of event time from ``time``.

    ``image_tag`` empty = every tag; ``containers`` empty = every container
    (matched on container name, or id). ``annotations`` carry the opt-outs.
    """

    image_name: str
    image_tag: str = ""
    containers: list[str] = []
    duration: int  # ns of event time
    annotations: dict[str, str] = {}


class ModelStatusChanged(_ModelMessage, frozen=True, kw_only=True, tag="models.status.v1"):
    """Event: a request's status moved. ``files`` are paths relative to the data dir."""

    request_id: str
    image_name: str
    image_tag: str = ""
    status: ModelStatus
    reason: str = ""
    replicas: list[str] = []
    files: list[str] = []


ModelMessage = StartModeling | ModelStatusChanged


# --- the model document (vArmor ArmorProfileModel) --------------------------------


class Coverage(Struct, frozen=True, kw_only=True):
    """How many replicas (containers) showed a rule; ``replicas`` in the model is the total."""

    coverage: int = 1


class ExecRule(Coverage, frozen=True, kw_only=True):
    path: str
    lineage: list[str] = []  # one observed ancestry (outermost first), for context


class FileRule(Coverage, frozen=True, kw_only=True):
    path: str  # generalised (wildcards)
    perms: str  # AppArmor order: m r w a ix (subset)


class EgressRule(Coverage, frozen=True, kw_only=True):
    proto: str
    addr: str
    port: int


class SyscallRule(Coverage, frozen=True, kw_only=True):
    name: str


class NameRule(Coverage, frozen=True, kw_only=True):
    name: str


class Network(Struct, frozen=True, kw_only=True):
    sockets: list[str] = []  # "inet stream", "inet6 dgram", …
    egress: list[EgressRule] = []
    dns: list[NameRule] = []


class Capabilities(Struct, frozen=True, kw_only=True):
    known: bool = False
    reason: str = CAPABILITIES_UNKNOWN
    names: list[str] = []


class SyscallCoverage(Struct, frozen=True, kw_only=True):
    """SPO's syscall coverage document (the ``spo.x-k8s.io/syscall-coverage`` annotation of a
    merged SeccompProfile, ``recordingmerger/coverage.go``), in its exact shape: ``total``
    replicas merged — one that made no syscall still counts — and per syscall how many made it."""

    version: str = "v1"
    total: int
    syscalls: dict[str, int] = {}


class BehaviourModel(Struct, frozen=True, kw_only=True, tag_field="kind", tag="model.v1"):
    """What a workload did: the source of both generated profiles."""

    profile_name: str
    image_name: str
    image_tag: str = ""
    source: str = ""  # "window:<request id>" or "learned-profile"
    start: int = 0
    end: int = 0
    replicas: int = 0
    containers: list[str] = []
    executions: list[ExecRule] = []
    files: list[FileRule] = []
    network: Network = Network()
    capabilities: Capabilities = Capabilities()
    syscalls: list[SyscallRule] = []
    syscall_coverage: SyscallCoverage | None = None  # SPO's document; None when no replica was merged
