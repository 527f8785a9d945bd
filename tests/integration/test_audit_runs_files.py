"""Audit-run files end to end: Gatekeeper lines through the intake socket, the
audit-report-writer as a subprocess SIGKILLed in the middle of a run, four
runs with the default retention of three."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from services.decision_intake.app import Intake
from services.decision_intake.client import gatekeeper_line, marker_line, send_lines
from services.runtime.settings import Settings
from tests.support import open_bus, vigil_process, wait_for

RUNS = ["2026-01-10T08:00:00Z", "2026-01-10T09:00:00Z", "2026-01-10T10:00:00Z", "2026-01-10T11:00:00Z"]
PER_RUN = 3000


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


KEPT = [f"2026-01-10T{h}_00_00Z.{ext}" for h in ("09", "10", "11") for ext in ("json", "log")]


def _runs(audit: Path) -> list[str]:
    return sorted(p.name for p in audit.glob("2026-*"))


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_audit_run_files_survive_a_kill_mid_run_and_keep_three_runs(settings: Settings, tmp_path: Path) -> None:
    audit = settings.data_path / "audit"
    first_txt = audit / "2026-01-10T08_00_00Z.txt"

    def run_lines(n: int) -> list[bytes]:
        audit_id = RUNS[n]
        body = [gatekeeper_line(n * PER_RUN + i, audit_id=audit_id) for i in range(PER_RUN)]
        body.insert(PER_RUN // 2, gatekeeper_line(n * PER_RUN + 7, audit_id=audit_id))  # re-sent by the client
        return [marker_line("audit_started", audit_id), *body, marker_line("audit_finished", audit_id, PER_RUN)]

    async def scenario() -> None:
        bus = await open_bus(settings)
        intake = Intake(settings, bus, tmp_path / "gk.sock")
        await intake.start()
        try:
            with vigil_process(settings, "run", "audit-report-writer") as writer:
                first = run_lines(0)
                cut = 1 + PER_RUN // 3  # the run's start and a third of it: the run stays open
                sending = asyncio.create_task(send_lines(intake.path, first[:cut], chunk_lines=100))
                await wait_for(lambda: _count_lines(first_txt) > 200, timeout=60)
                writer.send_signal(signal.SIGKILL)  # mid-run: the .txt is open
            assert first_txt.exists()
            await sending
            await send_lines(intake.path, first[cut:], chunk_lines=100)  # the rest, while no writer runs
            with vigil_process(settings, "run", "audit-report-writer"):
                for n in range(1, 4):
                    await send_lines(intake.path, run_lines(n))
                # the last run renamed to .log, and retention (the effect after it) done
                await wait_for(lambda: _runs(audit) == KEPT, timeout=60)
        finally:
            await intake.stop()
            await bus.close()

    asyncio.run(scenario())
    assert _runs(audit) == KEPT
    assert not list(audit.glob("*.txt")) and not list(audit.glob(".*.tmp"))
    for n, audit_id in enumerate(RUNS[1:], 1):
        stem = audit_id.replace(":", "_")
        lines = _lines(audit / f"{stem}.log")
        assert lines[0] == {
            "eventType": "audit_started",
            "auditId": audit_id,
            "timeStamp": f"2026-01-10T{audit_id[11:13]}:00:00.000000000Z",
        }
        assert lines[-1]["eventType"] == "audit_finished" and lines[-1]["violations"] == PER_RUN
        ids = [line["decisionId"] for line in lines[1:-1]]
        assert ids == [f"d-{n * PER_RUN + i:08d}" for i in range(PER_RUN)]  # each once, in stream order
        summary = json.loads((audit / f"{stem}.json").read_text())
        assert summary["violations"] == summary["reportedViolations"] == PER_RUN
        assert summary["file"] == f"{stem}.log"


def test_killed_run_is_complete_before_retention(settings: Settings, tmp_path: Path) -> None:
    """The run open when the writer was killed ends with every violation exactly once."""
    audit = settings.data_path / "audit"
    lines = [marker_line("audit_started", RUNS[0])] + [gatekeeper_line(i, audit_id=RUNS[0]) for i in range(PER_RUN)]
    lines.append(marker_line("audit_finished", RUNS[0], PER_RUN))
    txt = audit / "2026-01-10T08_00_00Z.txt"

    async def scenario() -> None:
        bus = await open_bus(settings)
        intake = Intake(settings, bus, tmp_path / "gk.sock")
        await intake.start()
        try:
            with vigil_process(settings, "run", "audit-report-writer") as writer:
                cut = 1 + PER_RUN // 3  # the run's start and a third of it: the run stays open
                sending = asyncio.create_task(send_lines(intake.path, lines[:cut], chunk_lines=100))
                await wait_for(lambda: _count_lines(txt) > 200, timeout=60)
                writer.send_signal(signal.SIGKILL)
            await sending
            await send_lines(intake.path, lines[cut:], chunk_lines=100)
            with vigil_process(settings, "run", "audit-report-writer"):
                await wait_for(lambda: (audit / "2026-01-10T08_00_00Z.log").exists(), timeout=60)
        finally:
            await intake.stop()
            await bus.close()

    asyncio.run(scenario())
    log = _lines(audit / "2026-01-10T08_00_00Z.log")
    assert [line["decisionId"] for line in log[1:-1]] == [f"d-{i:08d}" for i in range(PER_RUN)]
