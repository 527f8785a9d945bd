"""audit-report-writer core (pure): audit runs → the files that describe them.

One file per audit run, named after the run id (its start time, RFC3339, with
``:`` → ``_``): ``<id>.txt`` while the run is open, renamed ``<id>.log`` when
it finishes (as Gatekeeper's disk export driver does), plus ``<id>.json``, a
summary written when the run finishes. Lines are JSON: the start marker, every
violation of the run (Gatekeeper's decision-log shape), the end marker.

:func:`step` folds one decision-stream message into :class:`State` and returns
the file effects it implies, in order. Invariants:

- A decision id appears at most once per run; markers at most once; a run
  finishes at most once (redeliveries change nothing).
- A violation or end marker for a run never started opens it implicitly.
- Nothing is written for a run already finished (late lines are counted by
  the adapter, not written).
- After a finish, only the ``keep_runs`` most recent finished runs (by start
  time) keep their files.
- Pure: no I/O, no clock; times come from the messages.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from contracts.decisions import AuditFinished, AuditStarted, Decision
from contracts.intake import parse_rfc3339

KNOWN_FINISHED = 10_000  # finished run ids remembered for idempotency (beyond the files kept)
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encoder = msgspec.json.Encoder()


@dataclass
class Run:
    audit_id: str
    started: int  # ns, the run's start time
    ids: set[str] = field(default_factory=set)
    by_constraint: Counter[str] = field(default_factory=Counter)
    by_action: Counter[str] = field(default_factory=Counter)


@dataclass
class State:
    open: dict[str, Run] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)  # finished runs with files → start ns
    finished: dict[str, None] = field(default_factory=dict)  # every finished id (insertion-ordered, bounded)


@dataclass(frozen=True)
class OpenRun:
    name: str  # file stem
    line: bytes  # the start marker


@dataclass(frozen=True)
class AppendLine:
    name: str
    line: bytes


@dataclass(frozen=True)
class FinishRun:
    name: str
    line: bytes  # the end marker
    summary: bytes  # JSON summary of the run


@dataclass(frozen=True)
class DeleteRun:
    name: str


Effect = OpenRun | AppendLine | FinishRun | DeleteRun


def file_stem(audit_id: str) -> str:
    """The file name of a run without extension: ``:`` → ``_`` (Gatekeeper), nothing path-like."""
    stem = _UNSAFE.sub("_", audit_id.replace(":", "_"))
    return stem.lstrip(".") or "_"


def rfc3339(ns: int) -> str:
    moment = _EPOCH + timedelta(microseconds=ns // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"


def start_time(audit_id: str, fallback: int) -> int:
    parsed = parse_rfc3339(audit_id)
    return fallback if parsed is None else parsed


def step(state: State, message: object, keep_runs: int) -> list[Effect]:
    """Apply one message to ``state`` (mutated) and return the file effects, in order."""
    if isinstance(message, AuditStarted):
        return _ensure_open(state, message.audit_id, message.time)
    if isinstance(message, Decision) and message.audit_id:
        return _violation(state, message)
    if isinstance(message, AuditFinished):
        return _finish(state, message, keep_runs)
    return []


def _ensure_open(state: State, audit_id: str, time: int) -> list[Effect]:
    if audit_id in state.open or audit_id in state.finished:
        return []
    run = Run(audit_id, start_time(audit_id, time))
    state.open[audit_id] = run
    line = {"eventType": "audit_started", "auditId": audit_id, "timeStamp": rfc3339(run.started)}
    return [OpenRun(file_stem(audit_id), _encoder.encode(line))]


def _violation(state: State, d: Decision) -> list[Effect]:
    if d.audit_id in state.finished:
        return []
    effects = _ensure_open(state, d.audit_id, d.time)
    run = state.open[d.audit_id]
    if d.id in run.ids:
        return effects
    run.ids.add(d.id)
    run.by_constraint[d.rule] += 1
    run.by_action[d.action] += 1
    return [*effects, AppendLine(file_stem(d.audit_id), violation_line(d))]


def violation_line(d: Decision) -> bytes:
    kind, _, name = d.rule.partition("/")
    line: dict[str, Any] = {
        "timeStamp": rfc3339(d.time),
        "decisionId": d.id,
        "message": d.message,
        "eventType": d.event_type,
        "constraintKind": kind,
        "constraintName": name,
        "constraintAction": d.action,
        "resourceKind": d.resource_kind,
        "resourceNamespace": d.resource_namespace,
        "resourceName": d.resource_name,
        "auditId": d.audit_id,
    }
    if d.details is not None:
        line["details"] = d.details
    return _encoder.encode(line)


def _finish(state: State, m: AuditFinished, keep_runs: int) -> list[Effect]:
    if m.audit_id in state.finished:
        return []
    effects = _ensure_open(state, m.audit_id, m.time)
    run = state.open.pop(m.audit_id)
    _remember(state, m.audit_id)
    state.kept[m.audit_id] = run.started
    end = {
        "eventType": "audit_finished",
        "auditId": m.audit_id,
        "timeStamp": rfc3339(m.time),
        "violations": len(run.ids),
    }
    effects.append(FinishRun(file_stem(m.audit_id), _encoder.encode(end), summary(run, m)))
    return [*effects, *retention(state, keep_runs)]


def summary(run: Run, m: AuditFinished) -> bytes:
    doc = {
        "auditId": run.audit_id,
        "startTime": rfc3339(run.started),
        "endTime": rfc3339(m.time),
        "violations": len(run.ids),
        "reportedViolations": m.violations,
        "byConstraint": dict(sorted(run.by_constraint.items())),
        "byAction": dict(sorted(run.by_action.items())),
        "file": file_stem(run.audit_id) + ".log",
    }
    return _encoder.encode(doc)


def retention(state: State, keep_runs: int) -> list[Effect]:
    """Delete the files of all but the ``keep_runs`` most recent finished runs."""
    ordered = sorted(state.kept.items(), key=lambda kv: (kv[1], kv[0]))
    drop = ordered[: max(0, len(ordered) - keep_runs)]
    for audit_id, _ in drop:
        del state.kept[audit_id]
    return [DeleteRun(file_stem(audit_id)) for audit_id, _ in drop]


def _remember(state: State, audit_id: str) -> None:
    state.finished[audit_id] = None
    while len(state.finished) > KNOWN_FINISHED:
        del state.finished[next(iter(state.finished))]


# --- recovery: an open run's file → the run (pure, on the file's bytes) -----------------


_line_decoder = msgspec.json.Decoder(dict)


def recover_open(audit_id: str, content: bytes) -> tuple[Run, bytes]:
    """Rebuild an open run from its ``.txt`` after a crash: drop a torn last line, a
    premature end marker, undecodable and duplicate lines. Returns the run and the
    content the file must have."""
    run = Run(audit_id, start_time(audit_id, 0))
    kept: list[bytes] = []
    for raw in content.split(b"\n")[:-1]:  # the part after the last newline is torn
        try:
            doc = _line_decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            continue
        event = doc.get("eventType")
        if event == "audit_finished":
            break
        if event == "audit_started":
            if not kept:
                kept.append(raw)
            continue
        decision_id = str(doc.get("decisionId", ""))
        if not decision_id or decision_id in run.ids:
            continue
        run.ids.add(decision_id)
        kind, name = str(doc.get("constraintKind", "")), str(doc.get("constraintName", ""))
        run.by_constraint[f"{kind}/{name}" if kind or name else ""] += 1
        run.by_action[str(doc.get("constraintAction", ""))] += 1
        kept.append(raw)
    if not kept or _line_decoder.decode(kept[0]).get("eventType") != "audit_started":
        start = {"eventType": "audit_started", "auditId": audit_id, "timeStamp": rfc3339(run.started)}
        kept.insert(0, _encoder.encode(start))
    return run, b"".join(line + b"\n" for line in kept)
