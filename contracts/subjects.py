"""Every subject, stream and durable consumer name on the bus, in one place.

Streams (all file storage; replicas from settings):

=============  ==========================  ===========================================
stream         subjects                    payload
=============  ==========================  ===========================================
EVENTS         vigil.events.<partition>    msgpack EventBatch (raw events, batched)
DRIFT          vigil.drift.<partition>     msgpack DriftBatch
PROFILES       vigil.profiles.<image>      JSON ProfileEvent, one per message
COMMANDS       vigil.commands.<p>.<image>  JSON Command (operator, version-evictor)
ALERTS         vigil.alerts.raw|out|clock  JSON Alert / AlertThreshold / AlertClock
DECISIONS      vigil.decisions.<source>    JSON Decision / audit markers / Gatekeeper's shapes
DEADLETTER     vigil.dlq.<service>         JSON DeadLetter
MODELS         vigil.models.<kind>.<image> JSON StartModeling (requests) / ModelStatusChanged (status)
=============  ==========================  ===========================================
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

EVENTS = "EVENTS"
DRIFT = "DRIFT"
PROFILES = "PROFILES"
COMMANDS = "COMMANDS"
ALERTS = "ALERTS"
DECISIONS = "DECISIONS"
DEADLETTER = "DEADLETTER"
MODELS = "MODELS"
MODELS_REQUESTS = "vigil.models.requests.*"
EVENTS_ALL = "vigil.events.*"  # every partition of EVENTS

ALERTS_RAW = "vigil.alerts.raw"
ALERTS_OUT = "vigil.alerts.out"
ALERTS_CLOCK = "vigil.alerts.clock"  # detector's event-time watermark for the throttler (AlertClock)
INTAKE_DECISIONS = "vigil.decisions.intake"  # Gatekeeper-shaped payloads from NATS publishers (and Dapr)
QUERY_DECISIONS = "vigil.query.decisions"  # request/reply, read-only SQL (not a stream)
QUERY_PROFILES = "vigil.query.profiles"  # request/reply, profile summaries: .<partition> (not a stream)

HEARTBEAT_BUCKET = "vigil_heartbeats"
WORKLOAD_BUCKET = "vigil_workloads"
SNAPSHOT_BUCKET = "vigil_snapshots"
LEASE_BUCKET = "vigil_leases"  # partition ownership of scaled-out services
SNAPSHOT_OBJECTS = "vigil_snapshot_objects"  # object store: state snapshots any host can read (learner partitions)

_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def token(value: str) -> str:
    """A subject token for an arbitrary string (image names contain '/', '.', ':')."""
    return _TOKEN_UNSAFE.sub("_", value) or "_"


def partition_of(key: str, partitions: int) -> int:
    """Stable partition for a profile key (image name): crc32, same on every node."""
    return zlib.crc32(key.encode()) % partitions


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether a NATS subject filter (``*`` one token, ``>`` the rest) matches a subject."""
    want, have = pattern.split("."), subject.split(".")
    for i, token_ in enumerate(want):
        if token_ == ">":
            return len(have) > i
        if i >= len(have) or (token_ != "*" and token_ != have[i]):
            return False
    return len(want) == len(have)


def events_subject(partition: int) -> str:
    return f"vigil.events.{partition}"


def drift_subject(partition: int) -> str:
    return f"vigil.drift.{partition}"


def profiles_subject(image_name: str) -> str:
    return f"vigil.profiles.{token(image_name)}"


def commands_subject(image_name: str, partitions: int) -> str:
    """Commands travel on their image's partition, like its events."""
    return f"vigil.commands.{partition_of(image_name, partitions)}.{token(image_name)}"


def commands_filter(partition: int) -> str:
    return f"vigil.commands.{partition}.*"


def query_profiles_subject(partition: int) -> str:
    return f"{QUERY_PROFILES}.{partition}"


def subject_partition(subject: str) -> int:
    """The partition token of vigil.events.<p>, vigil.drift.<p> or vigil.commands.<p>.<image>."""
    return int(subject.split(".")[2])


def decisions_subject(source: str) -> str:
    return f"vigil.decisions.{token(source)}"


def dlq_subject(service: str) -> str:
    return f"vigil.dlq.{token(service)}"


def models_request_subject(image_name: str) -> str:
    return f"vigil.models.requests.{token(image_name)}"


def models_status_subject(image_name: str) -> str:
    return f"vigil.models.status.{token(image_name)}"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    description: str
    # limits are settings (streams.<name>.max_age / max_bytes, services/runtime/settings.py)


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(EVENTS, (EVENTS_ALL,), "raw runtime events, msgpack batches, partitioned by image"),
    StreamSpec(DRIFT, ("vigil.drift.*",), "behaviour not in a stable profile"),
    StreamSpec(PROFILES, ("vigil.profiles.*",), "profile life-cycle events"),
    StreamSpec(COMMANDS, ("vigil.commands.*.*",), "operator and evictor commands to the learner, by partition"),
    StreamSpec(ALERTS, ("vigil.alerts.*",), "anomaly alerts, raw and throttled"),
    StreamSpec(DECISIONS, ("vigil.decisions.*",), "every security decision"),
    StreamSpec(DEADLETTER, ("vigil.dlq.*",), "inputs a service could not use, with reasons"),
    StreamSpec(MODELS, ("vigil.models.*.*",), "behaviour modelling requests and their status"),
)


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer of one service on one stream."""

    stream: str
    durable: str
    filter_subjects: tuple[str, ...] = field(default_factory=tuple)
    partition: int | None = None  # set on the per-partition consumers of a scaled-out service

    @property
    def position_key(self) -> str:
        """Where the app keeps this consumer's position: the stream, or stream.partition."""
        return self.stream if self.partition is None else f"{self.stream}.{self.partition}"


def stream_spec(name: str) -> StreamSpec:
    for spec in STREAMS:
        if spec.name == name:
            return spec
    raise KeyError(name)
