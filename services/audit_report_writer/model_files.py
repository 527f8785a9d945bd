"""Model files on disk, and the audit-report-writer's modelling handler (the I/O side of :mod:`modeling`).

Files: ``<data_dir>/models/<image>/<tag>/{model.json, apparmor.profile, seccomp.json}``.

The texts come from the pure generators (:mod:`modeling`, :mod:`apparmor`,
:mod:`seccomp`); this module only renders the three formats and writes them
atomically (temp file + rename in the same directory), so a reader never
sees half a profile. Image and tag become path tokens (``/`` and ``:`` are
replaced); an empty tag (every tag) is written as ``any``. Writing the same
model twice gives the same bytes, so a redelivered completion is harmless.

:class:`ModelWindowsHandler` is what the app mounts: it consumes the MODELS
requests and the EVENTS stream, feeds the pure window fold, writes the files
of every window that closes and returns the status events to publish
(``Modeling`` on a request, ``Completed`` with the files, or ``Error``).
Open windows survive restarts: :meth:`ModelWindowsHandler.commit` (called by
the runner before it acks) writes them to ``<data_dir>/models/.windows.json``
whenever they changed, and a new instance loads that file. The fold is
idempotent (sets), so inputs handled after the last snapshot and redelivered
after a crash are simply folded again.

:func:`render_export` is ``vigil profiles export``'s dispatch: the three file
formats above, plus the formats of :data:`EXPORTERS` rendered from a learned
version (:class:`Learned`): NetworkPolicy and CiliumNetworkPolicy
(:mod:`netpol`), the portable JSON document (:mod:`portable`) and the lineage
graph (:mod:`lineage`). Modelling windows write only the three files.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from contracts.codec import ContractError, decode_batch, encode_json
from contracts.events import MAX_TIME_HEADER
from contracts.models import BehaviourModel, ModelMessage, ModelStatusChanged, StartModeling
from contracts.profiles import BehaviourAdded, ProfileDocument
from contracts.subjects import (
    EVENTS,
    MODELS,
    MODELS_REQUESTS,
    ConsumerSpec,
    models_status_subject,
    partition_of,
    subject_partition,
    token,
)
from services.audit_report_writer import apparmor, lineage, modeling, netpol, portable, seccomp
from services.runtime.files import write_atomically
from services.runtime.service import Incoming, Invalid, Outgoing

ExportFormat = Literal["model", "apparmor", "seccomp"]
FILE_NAMES: dict[ExportFormat, str] = {"model": "model.json", "apparmor": "apparmor.profile", "seccomp": "seccomp.json"}
MODELS_DIR = "models"


def host_arch() -> str:
    return platform.machine() or "x86_64"


def render(model: BehaviourModel, fmt: ExportFormat, arch: str | None = None, complain: bool = False) -> str:
    """``complain``: the profile logs what it does not allow instead of denying it (seccomp, AppArmor)."""
    if fmt == "model":
        return msgspec.json.format(msgspec.json.encode(model), indent=2).decode() + "\n"
    if fmt == "apparmor":
        return apparmor.render(model, complain)
    text = seccomp.render(model, arch or host_arch(), complain)
    seccomp.validate(text)
    return text


def model_dir(data_path: Path, image_name: str, image_tag: str) -> Path:
    return data_path / MODELS_DIR / token(image_name) / token(image_tag or "any")


def write_text(path: Path, text: str) -> None:
    write_atomically(path, text.encode())


def write_model(data_path: Path, model: BehaviourModel, arch: str | None = None) -> list[Path]:
    """Write all three files; returns their paths (model, AppArmor, seccomp)."""
    target = model_dir(data_path, model.image_name, model.image_tag)
    written = []
    for fmt, name in FILE_NAMES.items():
        path = target / name
        write_text(path, render(model, fmt, arch))
        written.append(path)
    return written


# --- exports of a learned version (`vigil profiles export`) ---------------------------------


@dataclass(frozen=True)
class Learned:
    """A learned version and what is known around it: what ``vigil profiles export`` renders.
    ``model`` feeds the profiles and policies, ``behaviours`` (its BehaviourAdded events) the
    lineage graph, ``document`` the portable JSON; ``selection`` picks the policies' pods."""

    model: BehaviourModel
    behaviours: tuple[BehaviourAdded, ...] = ()
    document: ProfileDocument | None = None
    selection: netpol.Selection | None = None
    dns_depth: int = 3


def _selection(learned: Learned) -> netpol.Selection:
    return learned.selection or netpol.selection(learned.model.image_name, learned.model.image_tag, [])


def _document(learned: Learned) -> str:
    if learned.document is None:
        raise ValueError("the json export needs the learner's summary of the version")
    return portable.encode(learned.document)


EXPORTERS: dict[str, Callable[[Learned], str]] = {
    "networkpolicy": lambda v: netpol.render_networkpolicy(v.model, _selection(v), v.dns_depth),
    "ciliumnetworkpolicy": lambda v: netpol.render_ciliumnetworkpolicy(v.model, _selection(v), v.dns_depth),
    "json": _document,
    "dot": lambda v: lineage.render(v.behaviours, v.model.image_name, v.model.image_tag),
}
EXPORT_FORMATS: tuple[str, ...] = (*FILE_NAMES, *EXPORTERS)


def render_export(learned: Learned, fmt: str, arch: str | None = None, complain: bool = False) -> str:
    """One of :data:`EXPORT_FORMATS`: the window files' formats through :func:`render`, the rest here."""
    exporter = EXPORTERS.get(fmt)
    if exporter is not None:
        return exporter(learned)
    return render(learned.model, fmt, arch, complain=complain)  # type: ignore[arg-type]


# --- the app's modelling handler ---------------------------------------------------------

SNAPSHOT_NAME = ".windows.json"


class _ReplicaSnap(msgspec.Struct, frozen=True):
    execs: dict[str, list[str]]
    files: dict[str, list[str]]
    egress: list[tuple[str, str, int]]
    dns: list[str]
    syscalls: list[str]


class _WindowSnap(msgspec.Struct, frozen=True):
    request: StartModeling
    start: int
    end: int
    replicas: dict[str, _ReplicaSnap]
    met: dict[str, int] = {}
    pending: bool = False


class WindowsSnapshot(msgspec.Struct, frozen=True, tag="models.windows.v1"):
    open: list[_WindowSnap]
    seen: list[str]
    watermark: int
    watermarks: dict[int, int] = {}


def snapshot_of(state: modeling.Windows) -> WindowsSnapshot:
    def replica(r: modeling.Replica) -> _ReplicaSnap:
        return _ReplicaSnap(
            execs={k: list(v) for k, v in sorted(r.execs.items())},
            files={k: sorted(v) for k, v in sorted(r.files.items())},
            egress=sorted(r.egress),
            dns=sorted(r.dns),
            syscalls=sorted(r.syscalls),
        )

    windows = [
        _WindowSnap(
            w.request, w.start, w.end, {k: replica(r) for k, r in sorted(w.replicas.items())}, dict(w.met), w.pending
        )
        for _, w in sorted(state.open.items())
    ]
    watermarks = dict(sorted(state.watermarks.items()))
    return WindowsSnapshot(open=windows, seen=sorted(state.seen), watermark=state.watermark, watermarks=watermarks)


def windows_of(snap: WindowsSnapshot, partitions: int = 1) -> modeling.Windows:
    """The open windows a snapshot holds, on ``partitions`` EVENTS partitions (a snapshot from
    before per-partition clocks has no ``met``: every node is met anew)."""

    def replica(r: _ReplicaSnap) -> modeling.Replica:
        return modeling.Replica(
            execs={k: tuple(v) for k, v in r.execs.items()},
            files={k: set(v) for k, v in r.files.items()},
            egress={tuple(e) for e in r.egress},  # type: ignore[misc]
            dns=set(r.dns),
            syscalls=set(r.syscalls),
        )

    state = modeling.Windows(
        seen=set(snap.seen), watermark=snap.watermark, partitions=partitions, watermarks=dict(snap.watermarks)
    )
    for w in snap.open:
        part = partition_of(w.request.image_name, partitions)
        window = modeling.Window(
            w.request, w.start, w.end, modeling.opted_out(w.request.annotations), partition=part, pending=w.pending
        )
        window.replicas = {k: replica(r) for k, r in w.replicas.items()}
        window.met = dict(w.met)
        state.open[w.request.id] = window
    return state


MODEL_CONSUMERS = (
    ConsumerSpec(MODELS, "audit-report-writer-models", (MODELS_REQUESTS,)),
    ConsumerSpec(EVENTS, "audit-report-writer-models-events"),
)
_request_decoder = msgspec.json.Decoder(ModelMessage)


class _Timed(msgspec.Struct, frozen=True):
    time: int


class _BatchTimes(msgspec.Struct, frozen=True):
    events: list[_Timed]


# With no window open only the watermark moves: read the events' times and skip the rest.
_times_decoder = msgspec.msgpack.Decoder(_BatchTimes)


def _max_time(msg: Incoming) -> int:
    """The batch's largest event time: from the publisher's header when it has one
    (no decoding at all: with no window open that is all the writer needs), else
    from the events' times."""
    try:
        return int(msg.headers[MAX_TIME_HEADER])
    except (KeyError, ValueError):
        pass
    try:
        times = _times_decoder.decode(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Invalid(f"not an EventBatch: {exc}") from exc
    return max((e.time for e in times.events), default=0)


def _status_out(status: ModelStatusChanged) -> Outgoing:
    return Outgoing(models_status_subject(status.image_name), encode_json(status), id=f"models:{status.id}")


class ModelWindowsHandler:
    """Incoming MODELS request / EVENTS batch -> status events to publish (files written on close)."""

    streams = (MODELS, EVENTS)

    def __init__(self, data_path: Path, arch: str | None = None, partitions: int = 1) -> None:
        self.data_path = data_path
        self.arch = arch or host_arch()
        self.partitions = partitions
        self.snapshot_path = data_path / MODELS_DIR / SNAPSHOT_NAME
        self.state = self._load()
        self._saved = self.state.revision

    def _load(self) -> modeling.Windows:
        try:
            snap = msgspec.json.decode(self.snapshot_path.read_bytes(), type=WindowsSnapshot)
            return windows_of(snap, self.partitions)
        except FileNotFoundError:
            return modeling.Windows(partitions=self.partitions)
        except (msgspec.DecodeError, msgspec.ValidationError):
            os.replace(self.snapshot_path, self.snapshot_path.with_suffix(".corrupt"))  # kept for a post-mortem
            return modeling.Windows(partitions=self.partitions)

    def commit(self) -> None:
        """Persist the open windows when they changed since the last snapshot (before the runner acks)."""
        if self.state.revision != self._saved:
            write_text(self.snapshot_path, msgspec.json.encode(snapshot_of(self.state)).decode())
            self._saved = self.state.revision

    def handle(self, msg: Incoming) -> list[Outgoing]:
        if msg.stream == MODELS:
            return self._request(msg)
        if not self.state.open:
            self._note_time(subject_partition(msg.subject), _max_time(msg))
            return []
        try:
            batch = decode_batch(msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        closed = [c for event in batch.events for c in modeling.advance(self.state, event, batch.partition)]
        return [_status_out(self._complete(c)) for c in closed]

    def _note_time(self, partition: int, time: int) -> None:
        """With no window open only the event time moves (a later request starts there)."""
        state = self.state
        state.watermark = max(state.watermark, time)
        state.watermarks[partition] = max(state.watermarks.get(partition, 0), time)

    def _request(self, msg: Incoming) -> list[Outgoing]:
        try:
            req = _request_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Invalid(f"not a modelling request: {exc}") from exc
        if not isinstance(req, StartModeling):
            raise Invalid(f"not a modelling request: {type(req).__name__} on {msg.subject}")
        return [_status_out(s) for s in modeling.request(self.state, req)]

    def _complete(self, closed: modeling.Closed) -> ModelStatusChanged:
        req, end = closed.request, closed.time
        if closed.model is None:
            return modeling.status(req, end, "Error", closed.reason)
        try:
            paths = write_model(self.data_path, closed.model, self.arch)
        except (OSError, seccomp.SeccompInvalid) as exc:
            return modeling.status(req, end, "Error", f"writing the model failed: {exc}")
        files = [str(p.relative_to(self.data_path)) for p in paths]
        return modeling.status(req, closed.model.end, "Completed", replicas=closed.model.containers, files=files)
