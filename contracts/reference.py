"""Generates docs/bus-reference.md from the contracts: every stream, subject and
message type with its JSON Schema (msgspec.json.schema_components).

    python -m contracts.reference            # rewrite docs/bus-reference.md
    python -m contracts.reference --check    # exit 1 if it is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from contracts import alerts, decisions, events, models, profiles, subjects, workloads

# (subject pattern, encoding, message types, what it carries)
CHANNELS: tuple[tuple[str, str, tuple[Any, ...], str], ...] = (
    ("vigil.events.<partition>", "msgpack", (events.EventBatch,), "raw runtime events from collectors, batched"),
    ("vigil.drift.<partition>", "msgpack", (profiles.DriftBatch,), "behaviour not in a stable profile"),
    ("vigil.profiles.<image>", "JSON", profiles.ProfileEvent.__args__, "profile life-cycle events"),
    (
        "vigil.commands.<partition>.<image>",
        "JSON",
        profiles.Command.__args__,
        "operator and version-evictor commands, on the image's partition",
    ),
    (subjects.ALERTS_RAW, "JSON", (alerts.Alert,), "anomaly alerts before throttling"),
    (subjects.ALERTS_OUT, "JSON", (alerts.Alert, alerts.AlertThreshold), "alerts after per-container throttling"),
    (subjects.ALERTS_CLOCK, "JSON", (alerts.AlertClock,), "the detector's event-time watermark for the throttler"),
    (
        "vigil.decisions.<source>",
        "JSON",
        decisions.DecisionMessage.__args__,
        "every security decision and audit markers",
    ),
    ("vigil.decisions.<source>", "JSON", (decisions.DecisionBatch,), "several of those in one message, in order"),
    (
        subjects.INTAKE_DECISIONS,
        "JSON",
        (decisions.GatekeeperDecision,),
        "Gatekeeper-shaped decisions from NATS publishers",
    ),
    (subjects.INTAKE_DECISIONS, "JSON", (decisions.GatekeeperAuditEvent,), "Gatekeeper audit run markers"),
    (subjects.INTAKE_DECISIONS, "JSON", (decisions.ExportMsg,), "Gatekeeper's violation export as it ships"),
    (subjects.INTAKE_DECISIONS, "JSON", (decisions.DaprCloudEvent,), "the same wrapped by Dapr (pubsub.jetstream)"),
    ("vigil.models.requests.<image>", "JSON", (models.StartModeling,), "behaviour modelling requests"),
    ("vigil.models.status.<image>", "JSON", (models.ModelStatusChanged,), "modelling window status"),
    ("(files) <data_dir>/models/<image>/<tag>/model.json", "JSON", (models.BehaviourModel,), "a completed model"),
    (
        "(file) vigil profiles export IMAGE:TAG --format json",
        "JSON",
        (profiles.ProfileDocument,),
        "a portable profile version, read by `vigil profiles import`",
    ),
    ("vigil.dlq.<service>", "JSON", (decisions.DeadLetter,), "inputs a service could not use, with the reason"),
    (f"KV {subjects.HEARTBEAT_BUCKET}", "JSON", (decisions.Heartbeat,), "liveness and counters per service instance"),
    (f"KV {subjects.WORKLOAD_BUCKET}", "JSON", (workloads.Workload,), "container id → workload identity"),
)


def _name(tp: Any) -> str:
    return str(tp.__name__)


def render() -> str:
    types: list[Any] = []
    for _, _, tps, _ in CHANNELS:
        types += [t for t in tps if t not in types]
    refs, components = msgspec.json.schema_components(types, ref_template="#/components/{name}")
    out = [
        "# Bus reference",
        "",
        "Generated from `contracts/` by `python -m contracts.reference`; a test fails when it is stale.",
        "Times are event time in nanoseconds since the Unix epoch (UTC). Every message carries",
        "`Nats-Msg-Id` (deterministic) and, when traced, a W3C `traceparent` header; an EventBatch",
        f"also `{events.MAX_TIME_HEADER}` (its largest event time) and, when the collector may hold it,",
        f"`{events.EVENTS_HEADER}` (its number of events). The same facts as an AsyncAPI 3.0 document:",
        "`docs/asyncapi.yaml` (`python -m contracts.asyncapi`).",
        "",
        "## Streams",
        "",
        "| stream | subjects | retention | what it holds |",
        "|---|---|---|---|",
    ]
    for spec in subjects.STREAMS:
        keep = f"`streams.{spec.name.lower()}.max_bytes` / `max_age` (discard new)"
        if spec.name == subjects.EVENTS:
            keep += "; compacted below its safe point only"
        out.append(f"| {spec.name} | `{'`, `'.join(spec.subjects)}` | {keep} | {spec.description} |")
    out += ["", "## Subjects", "", "| subject | encoding | messages | what it carries |", "|---|---|---|---|"]
    for subject, enc, tps, what in CHANNELS:
        names = ", ".join(f"[{_name(t)}](#{_name(t).lower()})" for t in tps)
        out.append(f"| `{subject}` | {enc} | {names} | {what} |")
    out += ["", "## Messages", ""]
    for tp, ref in zip(types, refs, strict=True):
        name = _name(tp)
        doc = (tp.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        tag = tp.__struct_config__.tag
        out += [f"### {name}", ""]
        if tag:
            out += [f'Tag `{tp.__struct_config__.tag_field}: "{tag}"`.', ""]
        if doc:
            out += [doc, ""]
        out += ["```json", json.dumps(components[ref["$ref"].rsplit("/", 1)[-1]], indent=2, sort_keys=True), "```", ""]
    out += ["## Shared definitions", ""]
    shared = sorted(set(components) - {_name(t) for t in types})
    for name in shared:
        out += [f"### {name}", "", "```json", json.dumps(components[name], indent=2, sort_keys=True), "```", ""]
    return "\n".join(out)


def target() -> Path:
    return Path(__file__).resolve().parent.parent / "docs" / "bus-reference.md"


def write_or_check(path: Path, text: str, argv: list[str], command: str) -> int:
    """A generated doc's entry point: rewrite ``path``, or with ``--check`` exit 1 if it is stale."""
    if "--check" in argv:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is stale: run {command}", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def main(argv: list[str]) -> int:
    return write_or_check(target(), render(), argv, "python -m contracts.reference")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
