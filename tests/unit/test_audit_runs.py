"""Audit-run files: the pure fold (idempotent, retention) and the file adapter
(names, .txt → .log, summaries, crash recovery), on a real directory."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from contracts.codec import encode_json
from contracts.decisions import AuditFinished, AuditStarted, Decision
from contracts.intake import Accepted, normalise
from services.audit_report_writer import core
from services.audit_report_writer.audit_runs import AuditRuns
from services.decision_intake.client import gatekeeper_line, marker_line
from services.runtime.service import Incoming
from tests.support import make_settings

RUN1 = "2026-01-10T08:00:00Z"
RUN2 = "2026-01-10T09:00:00Z"


def violation(i: int, audit_id: str) -> Decision:
    result = normalise(gatekeeper_line(i, audit_id=audit_id))
    assert isinstance(result, Accepted) and isinstance(result.message, Decision)
    return result.message


def run_messages(audit_id: str, n: int, first: int = 0) -> list[object]:
    return [
        AuditStarted(audit_id=audit_id, time=1),
        *(violation(first + i, audit_id) for i in range(n)),
        AuditFinished(audit_id=audit_id, time=2),
    ]


def test_step_is_idempotent_and_orders_effects() -> None:
    state = core.State()
    messages = run_messages(RUN1, 3)
    effects = [e for m in messages for e in core.step(state, m, keep_runs=3)]
    again = [e for m in messages for e in core.step(state, m, keep_runs=3)]
    assert [type(e).__name__ for e in effects] == ["OpenRun", "AppendLine", "AppendLine", "AppendLine", "FinishRun"]
    assert again == []
    assert {e.name for e in effects} == {"2026-01-10T08_00_00Z"}
    summary = json.loads(effects[-1].summary)  # type: ignore[union-attr]
    assert summary["violations"] == 3 and summary["file"] == "2026-01-10T08_00_00Z.log"


def test_violation_without_start_opens_the_run_and_late_lines_are_dropped() -> None:
    state = core.State()
    effects = core.step(state, violation(1, RUN1), 3)
    assert [type(e).__name__ for e in effects] == ["OpenRun", "AppendLine"]
    core.step(state, AuditFinished(audit_id=RUN1, time=5), 3)
    assert core.step(state, violation(2, RUN1), 3) == []


def test_retention_keeps_the_latest_runs_by_start_time() -> None:
    state = core.State()
    ids = [f"2026-01-1{d}T00:00:00Z" for d in (3, 1, 4, 2)]  # finished out of start order
    deleted: list[str] = []
    for audit_id in ids:
        for m in run_messages(audit_id, 1):
            deleted += [e.name for e in core.step(state, m, keep_runs=2) if isinstance(e, core.DeleteRun)]
    assert deleted == ["2026-01-11T00_00_00Z", "2026-01-12T00_00_00Z"]
    assert sorted(state.kept) == ["2026-01-13T00:00:00Z", "2026-01-14T00:00:00Z"]


def test_file_stem_never_escapes_the_directory() -> None:
    assert core.file_stem("2026-01-10T08:00:00.5+01:00") == "2026-01-10T08_00_00.5+01_00"
    assert "/" not in core.file_stem("../../etc/passwd") and not core.file_stem("../x").startswith(".")


def test_recover_open_drops_torn_duplicate_and_premature_end_lines() -> None:
    start = marker_line("audit_started", RUN1)
    v1, v2 = core.violation_line(violation(1, RUN1)), core.violation_line(violation(2, RUN1))
    end = b'{"eventType":"audit_finished","auditId":"' + RUN1.encode() + b'"}'
    content = b"\n".join([start, v1, v1, v2, end]) + b"\n" + v2[:20]
    run, fixed = core.recover_open(RUN1, content)
    assert fixed == b"\n".join([start, v1, v2]) + b"\n"
    assert run.ids == {"d-00000001", "d-00000002"}


# --- the adapter on a real directory ------------------------------------------------------


def _writer(tmp_path: Path, keep: int = 3) -> AuditRuns:
    settings = make_settings(tmp_path, "nats://127.0.0.1:1", AUDIT_REPORTS_KEEP_RUNS=str(keep))
    runs = AuditRuns(settings, Counter(), {})
    runs.load()
    return runs


def _feed(runs: AuditRuns, messages: list[object], commit: bool = True) -> None:
    for seq, m in enumerate(messages, 1):
        runs.handle(
            Incoming(
                id=str(seq), subject="vigil.decisions.x", stream="DECISIONS", seq=seq, data=encode_json(m), headers={}
            )
        )
    if commit:
        runs.commit()


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_files_open_txt_then_log_with_summary(tmp_path: Path) -> None:
    runs = _writer(tmp_path)
    messages = run_messages(RUN1, 4)
    _feed(runs, messages[:3])
    txt = runs.dir / "2026-01-10T08_00_00Z.txt"
    assert [line["eventType"] for line in _lines(txt)] == ["audit_started", "audit_violation", "audit_violation"]
    _feed(runs, messages[3:])
    assert not txt.exists()
    log = _lines(runs.dir / "2026-01-10T08_00_00Z.log")
    assert [line["eventType"] for line in log] == ["audit_started"] + ["audit_violation"] * 4 + ["audit_finished"]
    assert [line.get("decisionId") for line in log[1:-1]] == [f"d-{i:08d}" for i in range(4)]
    summary = json.loads((runs.dir / "2026-01-10T08_00_00Z.json").read_text())
    assert summary["violations"] == 4 and summary["byAction"] == {"deny": 2, "dryrun": 2}
    assert not list(runs.dir.glob(".*.tmp"))


def test_retention_deletes_old_files_and_survives_restart(tmp_path: Path) -> None:
    runs = _writer(tmp_path, keep=2)
    audit_ids = [f"2026-01-1{d}T00:00:00Z" for d in range(1, 5)]
    for n, audit_id in enumerate(audit_ids):
        _feed(runs, run_messages(audit_id, 2, first=n * 10))
    assert sorted(p.name for p in runs.dir.glob("*.log")) == ["2026-01-13T00_00_00Z.log", "2026-01-14T00_00_00Z.log"]
    assert len(list(runs.dir.glob("2026-*.json"))) == 2
    again = _writer(tmp_path, keep=2)
    _feed(again, run_messages(audit_ids[0], 2))  # redelivered: the deleted run stays deleted
    assert sorted(p.name for p in again.dir.glob("*.log")) == ["2026-01-13T00_00_00Z.log", "2026-01-14T00_00_00Z.log"]


def test_crash_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    messages = run_messages(RUN2, 6)
    runs = _writer(tmp_path)
    _feed(runs, messages[:4])  # committed: start + 3 violations
    _feed(runs, messages[4:6], commit=False)  # handled, never committed: the crash
    txt = runs.dir / "2026-01-10T09_00_00Z.txt"
    with open(txt, "ab") as fh:  # a torn append and a duplicate, as a crash mid-write can leave
        fh.write(core.violation_line(violation(1, RUN2)) + b"\n" + b'{"timeStamp":"2026')
    restarted = _writer(tmp_path)
    _feed(restarted, messages)  # everything unacked is redelivered (and some acked lines too)
    log = _lines(restarted.dir / "2026-01-10T09_00_00Z.log")
    ids = [line["decisionId"] for line in log if line["eventType"] == "audit_violation"]
    assert ids == [f"d-{i:08d}" for i in range(6)]
    assert [line["eventType"] for line in (log[0], log[-1])] == ["audit_started", "audit_finished"]


def test_position_is_saved_with_file_changes_not_on_every_commit(tmp_path: Path) -> None:
    """positions.json (fsynced) is written when a commit changed a file; decisions that are
    not part of any audit run change nothing and do not cost an fsync each."""
    runs = _writer(tmp_path)
    pos = runs.dir / "positions.json"
    runs.positions["DECISIONS"] = 1
    _feed(runs, run_messages(RUN1, 1)[:1])  # the run's start marker: a file is created
    assert json.loads(pos.read_text()) == {"DECISIONS": 1}
    webhook = []
    for i in range(3):
        accepted = normalise(gatekeeper_line(i))
        assert isinstance(accepted, Accepted)
        webhook.append(accepted.message)
    runs.positions["DECISIONS"] = 4
    _feed(runs, webhook)
    assert json.loads(pos.read_text()) == {"DECISIONS": 1}  # nothing changed: not rewritten yet
    runs.positions["DECISIONS"] = 5
    _feed(runs, run_messages(RUN1, 2)[1:2])  # a violation of the run: appended, position saved
    assert json.loads(pos.read_text()) == {"DECISIONS": 5}
