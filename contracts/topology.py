"""Who reads and who writes each subject: every producer's outputs and every
service's durable consumers, as data (docs/asyncapi.yaml is generated from it).

Subjects are written as in the bus reference (:data:`contracts.reference.CHANNELS`):
``<name>`` is a variable token (a partition, an image), ``*`` a filter's wildcard.
A consumer of a partitioned service is a template: its durable and filter name
``<partition>``, and :meth:`Endpoints.consumers_of` gives the consumers of one partition.

The services' apps declare their consumers themselves; tests/contract checks that
each app's consumers are the ones written here, so this table cannot drift from them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from contracts import subjects as s
from contracts.subjects import ConsumerSpec

PARTITION = "<partition>"


@dataclass(frozen=True)
class Endpoints:
    """One program on the bus: what it consumes (durable pull consumers) and where it publishes."""

    name: str
    description: str
    consumers: tuple[ConsumerSpec, ...] = ()
    outputs: tuple[str, ...] = ()
    dead_letters: bool = True  # publishes what it cannot use on vigil.dlq.<name>

    def consumers_of(self, partition: int) -> tuple[ConsumerSpec, ...]:
        """The partition templates among :attr:`consumers`, for one partition."""
        return tuple(
            replace(
                c,
                durable=c.durable.replace(PARTITION, str(partition)),
                filter_subjects=tuple(f.replace(PARTITION, str(partition)) for f in c.filter_subjects),
                partition=partition,
            )
            for c in self.consumers
            if PARTITION in c.durable
        )

    @property
    def outputs_with_dead_letters(self) -> tuple[str, ...]:
        return (*self.outputs, s.dlq_subject(self.name)) if self.dead_letters and self.consumers else self.outputs


ENDPOINTS: tuple[Endpoints, ...] = (
    Endpoints(
        "collector",
        "node collector: raw runtime events (and clock ticks), batched per partition",
        outputs=("vigil.events.<partition>",),
        dead_letters=False,
    ),
    Endpoints(
        "profile-learner",
        "owns the profiles: learns behaviour, reports drift, applies commands; one partition per consumer pair",
        consumers=(
            ConsumerSpec(s.EVENTS, f"profile-learner-p{PARTITION}", (f"vigil.events.{PARTITION}",)),
            ConsumerSpec(s.COMMANDS, f"profile-learner-commands-p{PARTITION}", (f"vigil.commands.{PARTITION}.*",)),
        ),
        outputs=("vigil.profiles.<image>", "vigil.drift.<partition>"),
    ),
    Endpoints(
        "version-evictor",
        "evicts the least recently seen version of a profile past max_image_tags",
        consumers=(ConsumerSpec(s.PROFILES, "version-evictor"),),
        outputs=("vigil.commands.<partition>.<image>",),
    ),
    Endpoints(
        "anomaly-detector",
        "turns drift into alerts and anomaly decisions, with the event-time watermark for the throttler",
        consumers=(ConsumerSpec(s.DRIFT, "anomaly-detector"),),
        outputs=(s.ALERTS_RAW, s.ALERTS_CLOCK, s.decisions_subject("anomaly")),
    ),
    Endpoints(
        "throttler",
        "per-container alert throttling (KubeArmor semantics)",
        consumers=(ConsumerSpec(s.ALERTS, "throttler", (s.ALERTS_RAW, s.ALERTS_CLOCK)),),
        outputs=(s.ALERTS_OUT, s.decisions_subject("throttle")),
    ),
    Endpoints(
        "decision-intake",
        "external decisions (unix socket ndjson, Gatekeeper's export directory) onto the bus",
        outputs=(s.INTAKE_DECISIONS,),
    ),
    Endpoints(
        "gatekeeper",
        "OPA Gatekeeper (or any NATS publisher, or Dapr's pubsub.jetstream) publishing its violations",
        outputs=(s.INTAKE_DECISIONS,),
        dead_letters=False,
    ),
    Endpoints(
        "decision-log-archiver",
        "the single writer of the DuckDB decision archive",
        consumers=(ConsumerSpec(s.DECISIONS, "decision-log-archiver"),),
    ),
    Endpoints(
        "audit-report-writer",
        "audit run files, behaviour models and the AppArmor and seccomp profiles made from them",
        consumers=(
            ConsumerSpec(s.DECISIONS, "audit-report-writer"),
            ConsumerSpec(s.MODELS, "audit-report-writer-models", (s.MODELS_REQUESTS,)),
            ConsumerSpec(s.EVENTS, "audit-report-writer-models-events"),
        ),
        outputs=("vigil.models.status.<image>",),
    ),
    Endpoints(
        "vigil-cli",
        "the operator's CLI: profile commands (set-state, import) and modelling requests",
        outputs=("vigil.commands.<partition>.<image>", "vigil.models.requests.<image>"),
        dead_letters=False,
    ),
)


def endpoints(name: str) -> Endpoints:
    for e in ENDPOINTS:
        if e.name == name:
            return e
    raise KeyError(name)
