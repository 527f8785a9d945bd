"""Profile events (PROFILES stream, JSON), operator commands (COMMANDS stream, JSON)
and drift (DRIFT stream), owned by the profile-learner.

States per (profile version, event type) follow Datadog's security profile
life-cycle: ``warmup`` → ``learning`` → ``stable``; ``unstable`` is terminal
for that event type; ``at_max_size`` when the version hit its size limit.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import Struct

from contracts.events import Container, EventType, RawEvent

ProfileState = Literal["warmup", "learning", "stable", "unstable", "at_max_size"]
PROFILE_STATES: tuple[ProfileState, ...] = ("warmup", "learning", "stable", "unstable", "at_max_size")

DEFAULT_IMAGE_TAG = "latest"


class _ProfileEvent(Struct, frozen=True, kw_only=True, tag_field="kind", omit_defaults=True):
    id: str
    time: int
    image_name: str
    image_tag: str = ""


class VersionFirstSeen(_ProfileEvent, frozen=True, tag="profile.version_first_seen.v1"):
    """A new image tag seen for a profile. ``versions`` is every version the
    profile holds right after it (image tag -> last seen, event time ns): the
    version-evictor decides on it alone, so it needs no other input."""

    container_id: str = ""
    versions: dict[str, int] = {}


class BehaviourAdded(_ProfileEvent, frozen=True, tag="profile.behaviour_added.v1"):
    """One behaviour inserted into a version. ``behaviour`` is the canonical key:

    - exec: the executable path; ``lineage`` holds ancestors + executable
    - open: the generalised file path; ``access`` is a subset of "rwx" (and
      ``executable`` who opened it)
    - dns: the name matched on its last ``dns_match_max_depth`` labels
    - connect: ``<proto>:<addr or CIDR class>:<port>``
    - syscalls: the syscall name (``executable`` who made it)

    Folding a version's BehaviourAdded events gives everything it learned, which
    is what the audit-report-writer models and turns into AppArmor/seccomp.
    """

    event_type: EventType
    behaviour: str
    executable: str = ""
    access: str = ""
    lineage: list[str] = []


class StateChanged(_ProfileEvent, frozen=True, tag="profile.state_changed.v1"):
    event_type: EventType
    old_state: ProfileState
    new_state: ProfileState
    reason: str = ""  # "stable_period", "time_threshold", "size_threshold", "operator", "import"


class VersionEvicted(_ProfileEvent, frozen=True, tag="profile.version_evicted.v1"):
    last_seen: int = 0
    reason: str = "max_image_tags"


class ProfileReset(_ProfileEvent, frozen=True, tag="profile.reset.v1"):
    pass


class CommandApplied(_ProfileEvent, frozen=True, tag="profile.command_applied.v1"):
    """Marker: the learner applied command ``command_id`` (COMMANDS stream
    sequence ``command_seq``) right after EVENTS stream sequence ``events_seq``,
    at event time ``time``. `vigil replay profile-learner` interleaves commands
    with events at these points, so a replay reproduces the live state exactly."""

    command_id: str
    command_seq: int = 0
    events_seq: int = 0


ProfileEvent = VersionFirstSeen | BehaviourAdded | StateChanged | VersionEvicted | ProfileReset | CommandApplied


# --- operator and service commands (imperative) --------------------------------


class _Command(Struct, frozen=True, kw_only=True, tag_field="kind", omit_defaults=True):
    id: str
    time: int = 0  # event time at which it applies; 0 = "now" in the learner's clock
    image_name: str


class SetState(_Command, frozen=True, tag="command.set_state.v1"):
    image_tag: str
    state: ProfileState
    event_type: EventType | None = None  # None: every event type


class ResetProfile(_Command, frozen=True, tag="command.reset_profile.v1"):
    image_tag: str | None = None  # None: the whole profile


class EvictVersion(_Command, frozen=True, tag="command.evict_version.v1"):
    image_tag: str
    last_seen: int = 0


class ImportBehaviour(_Command, frozen=True, tag="command.import_behaviour.v1"):
    """Add behaviour to a version (``vigil profiles import``): ``behaviours`` per event type,
    each in :class:`BehaviourAdded`'s terms (see :class:`LearnedBehaviour`). The learner
    inserts what the version does not know yet (union; nothing is removed or replaced) and
    emits the ``BehaviourAdded`` events it emits when it learns, with ids derived from this
    command's id. A version that does not exist yet is created with ``first_seen``,
    ``last_seen`` and ``states`` (``VersionFirstSeen``, then ``StateChanged`` with
    ``reason="import"``); an existing version keeps its own. ``partition`` is the
    image's partition (a new profile needs one). A large import is several commands
    (``chunk`` of ``chunks``), each well under the server's max payload. What the
    learner counts of this cluster's own containers (starts, replicas, drift, loss)
    is not imported: it is evidence only local observation gives."""

    image_tag: str
    partition: int = 0
    first_seen: int = 0
    last_seen: int = 0
    states: dict[str, ProfileState] = {}
    last_new: dict[str, int] = {}  # event type -> when the version last learned something new
    behaviours: dict[EventType, list[LearnedBehaviour]] = {}  # as in the document (times not needed)
    chunk: int = 1
    chunks: int = 1
    source: str = ""  # where the behaviour comes from (the document's origin), for the record


Command = SetState | ResetProfile | EvictVersion | ImportBehaviour


# --- drift ----------------------------------------------------------------------

DriftReason = Literal["stable_version", "other_version_stable"]


class Drift(Struct, frozen=True, kw_only=True, tag="drift.v1", omit_defaults=True):
    """Behaviour not in a stable profile. ``inserted`` tells whether the learner
    added it to the version (learning) or not (stable)."""

    id: str
    time: int
    image_name: str
    image_tag: str
    event_type: EventType
    behaviour: str
    version_state: ProfileState
    reason: DriftReason
    inserted: bool
    stable_tag: str = ""  # the version whose stable state made it drift
    container: Container
    event: RawEvent
    event_id: str = ""


class DriftBatch(Struct, frozen=True, kw_only=True, tag="drift_batch.v1"):
    """Drift found in one input batch. ``watermark`` is the event time the
    learner has reached on this partition (ticks included), so downstream
    services can close event-time windows even when no drift arrives; a batch
    may carry no drift and only advance the watermark. ``clocks`` is that time
    per node (the ``node`` of the events and ticks) for the nodes of the input
    batch: each node's event time is its own (docs/runtime.md), and a window
    opened by a node's drift closes on that node's clock. Empty from an older
    learner: ``watermark`` is then every node's."""

    drifts: list[Drift]
    watermark: int = 0
    # Position among this partition's DriftBatches (1, 2, ...; 0: not numbered). The
    # learner publishes many batches before it waits for their acks, so a batch lost
    # in a failover and published again is stored after later ones; consumers apply
    # a partition's batches in ``seq`` order (the anomaly-detector holds early ones).
    seq: int = 0
    clocks: dict[str, int] = {}


class ProfileSummary(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What `vigil profiles show -o json` prints and the query endpoint returns. Each version:
    ``image_tag``, ``first_seen``, ``last_seen`` (event time ns), ``states`` and ``sizes`` (per
    event type), ``size`` (total behaviours)."""

    image_name: str
    versions: list[dict[str, Any]]
    partition: int = 0  # the EVENTS/DRIFT partition of the profile
    event_time: int = 0  # the profile's event time (ns)


# --- the portable document (`vigil profiles export --format json`, `vigil profiles import`) --------


class LearnedBehaviour(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One behaviour of a version: :class:`BehaviourAdded`'s fields, plus the event times the
    version first learned it and last grew it (an open's access can grow: ``r`` then ``rw``)."""

    behaviour: str
    executable: str = ""
    access: str = ""
    lineage: list[str] = []
    first_seen: int = 0
    last_seen: int = 0


class LearnedType(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a version learned for one event type: its state, how many behaviours, the behaviours
    (sorted), and ``last_new``: when it last learned something new of the type (event time, ns)."""

    state: ProfileState
    count: int
    last_new: int = 0
    behaviours: list[LearnedBehaviour] = []


class ProfileDocument(
    Struct, frozen=True, kw_only=True, tag_field="kind", tag="profile_document.v1", omit_defaults=True
):
    """A portable profile version: what ``vigil profiles export --format json`` writes and
    ``vigil profiles import`` reads. ``first_seen``/``last_seen`` (event time, ns) and the
    state per event type are the version's as the learner held them; ``event_types`` maps
    each type to its behaviours. DNS names are the learner's keys (the last
    ``dns_match_max_depth`` labels). Importing never removes or replaces behaviour (union)."""

    image_name: str
    image_tag: str
    first_seen: int = 0
    last_seen: int = 0
    event_time: int = 0  # the profile's event time when it was exported
    dns_match_max_depth: int = 3
    event_types: dict[EventType, LearnedType] = {}
