"""The decision archive end to end on a real nats-server and a real DuckDB file:
intake socket → DECISIONS → archiver → read-only SQL through the archiver."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import duckdb
import pytest

from contracts.subjects import INTAKE_DECISIONS
from services.decision_intake.app import Intake
from services.decision_intake.client import gatekeeper_line, marker_line, send_lines
from services.decision_log_archiver import client, query
from services.decision_log_archiver.app import Archiver
from services.runtime.bus import publish_one
from services.runtime.settings import Settings
from tests.support import make_settings, open_bus, running, wait_for

AUDIT = "2026-01-10T08:00:00Z"


async def _count(bus, sql: str = "SELECT count(*) FROM decisions") -> int:  # type: ignore[no-untyped-def]
    try:
        return int((await client.ask(bus, query.QueryRequest(sql=sql))).rows[0][0])
    except (query.QueryFailed, client.NoArchiver):
        return -1  # the archiver is starting


async def _has(bus, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await _count(bus) == n


def test_intake_to_archive_and_sql(settings: Settings, tmp_path: Path) -> None:
    out = asyncio.run(_intake_to_archive_and_sql(settings, tmp_path))
    days = sorted(p.name for p in out.iterdir())
    assert days == ["day=2026-01-10"]
    total = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{out}/*/*.parquet')").fetchone()
    assert total == (301,)
    # no archiver now: the CLI's fallback reads the file directly, still read-only
    result, where = client.run(settings, query.QueryRequest(sql="SELECT count(DISTINCT id) FROM decisions"))
    assert (result.rows, where) == ([(301,)], "file")
    with pytest.raises(query.QueryRefused):
        client.run(settings, query.QueryRequest(sql="UPDATE decisions SET action = 'x'"))


async def _intake_to_archive_and_sql(settings: Settings, tmp_path: Path) -> Path:
    bus = await open_bus(settings)
    intake = Intake(settings, bus, tmp_path / "gk.sock")
    await intake.start()
    try:
        async with running(Archiver(settings), settings):
            lines = [marker_line("audit_started", AUDIT)]
            lines += [gatekeeper_line(i, audit_id=AUDIT if i % 2 else "") for i in range(300)]
            lines += [b"{not json", gatekeeper_line(5, audit_id=AUDIT), marker_line("audit_finished", AUDIT, 150)]
            answers = await send_lines(intake.path, lines)
            assert [a["ok"] for a in answers] == [True] * 301 + [False, True, True]
            assert answers[302]["id"] == "d-00000005"  # sent twice (in another read: stored twice, archived once)
            assert "invalid JSON" in str(answers[301]["reason"])
            # a Gatekeeper-shaped payload published straight on the NATS intake subject
            await publish_one(bus, INTAKE_DECISIONS, gatekeeper_line(999, prefix="nats"), "nats-999")
            await wait_for(lambda: _has(bus, 301))
            by_action = await client.ask(
                bus, query.QueryRequest(sql="SELECT action, count(*) FROM decisions GROUP BY 1 ORDER BY 1")
            )
            assert by_action.rows == [("deny", 150), ("dryrun", 151)]
            audit = await client.ask(
                bus, query.QueryRequest(sql=f"SELECT count(*) FROM decisions WHERE audit_id = '{AUDIT}'")
            )
            assert audit.rows == [(150,)]
            row = await client.ask(
                bus,
                query.QueryRequest(
                    sql="SELECT source, rule, input->>'$.review.object.metadata.name' FROM decisions "
                    "WHERE id = 'nats-00000999'"
                ),
            )
            assert row.rows == [("gatekeeper", "RunAsNonRoot/constraint-5", "web-49")]
            with pytest.raises(query.QueryRefused):
                await client.ask(bus, query.QueryRequest(sql="DELETE FROM decisions"))
            with pytest.raises(query.QueryRefused):
                await client.ask(bus, query.QueryRequest(sql="SELECT 1; DROP TABLE decisions"))
            with pytest.raises(query.QueryRefused):
                await client.ask(bus, query.QueryRequest(sql="SELECT * FROM read_text('/etc/hostname')"))
            assert await _count(bus) == 301
            out = tmp_path / "parquet"
            exported = await client.ask(bus, query.QueryRequest(export=str(out)))
            assert exported.rows[0][0] == 301
        assert intake.counters["rejected_invalid_json"] == 1
    finally:
        await intake.stop()
        await bus.close()
    return out


def test_sql_during_writes_is_consistent(nats_server: Any, tmp_path: Path) -> None:
    """Each query sees one committed snapshot while the archiver writes: two scans
    of the table inside one query agree, rows never run ahead of the stored
    position (written in the same transaction), and counts never go back.
    (Commits as soon as a pull returns, so many small ones overlap the queries.)"""
    settings = make_settings(tmp_path / "vigil", nats_server.url, ARCHIVE_FLUSH_INTERVAL="0s")
    asyncio.run(_sql_during_writes(settings, tmp_path))


SNAPSHOT_SQL = (
    "SELECT (SELECT count(*) FROM decisions), "
    "(SELECT count(*) FROM decisions WHERE action IN ('deny', 'dryrun')), "
    "coalesce((SELECT max(stream_seq) FROM decisions), 0), "
    "coalesce((SELECT max(seq) FROM positions), 0)"
)


async def _sql_during_writes(settings: Settings, tmp_path: Path) -> None:
    bus = await open_bus(settings)
    intake = Intake(settings, bus, tmp_path / "gk.sock")
    await intake.start()
    snapshots: list[tuple[int, ...]] = []
    try:
        async with running(Archiver(settings), settings):

            async def write() -> None:
                for batch in range(10):
                    await send_lines(intake.path, [gatekeeper_line(batch * 300 + i) for i in range(300)])

            task = asyncio.create_task(write())
            while not task.done() or not snapshots or snapshots[-1][0] < 3000:
                try:
                    snapshots.append((await client.ask(bus, query.QueryRequest(sql=SNAPSHOT_SQL))).rows[0])
                except (query.QueryFailed, client.NoArchiver):
                    pass  # the archiver is starting
                await asyncio.sleep(0.005)
            await task
    finally:
        await intake.stop()
        await bus.close()
    assert len({s[0] for s in snapshots}) > 2, "queries should overlap the writes"
    for total, typed, max_row_seq, position in snapshots:
        assert total == typed
        assert max_row_seq <= position
    counts = [s[0] for s in snapshots]
    assert counts == sorted(counts)


def test_cli_sql_and_export_on_the_file_when_no_archiver_runs(settings: Settings, tmp_path: Path) -> None:
    """`vigil decisions sql` / `export` as an operator runs them (subprocess), with no
    archiver: read-only on the file."""
    import subprocess
    import sys

    from services.decision_log_archiver.app import Archiver as _Archiver
    from tests.support import service_env

    async def fill() -> None:
        bus = await open_bus(settings)
        try:
            async with running(_Archiver(settings), settings):
                for i in range(3):
                    await publish_one(bus, INTAKE_DECISIONS, gatekeeper_line(i, day=10 + i), f"cli-{i}")
                await wait_for(lambda: _has(bus, 3))
        finally:
            await bus.close()

    asyncio.run(fill())

    def vigil(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli.main", *args],
            env=service_env(settings),
            capture_output=True,
            timeout=60,
        )

    as_json = vigil("decisions", "sql", "SELECT id, action FROM decisions ORDER BY id", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert [line for line in as_json.stdout.decode().splitlines()] == [
        '{"id":"d-00000000","action":"deny"}',
        '{"id":"d-00000001","action":"dryrun"}',
        '{"id":"d-00000002","action":"deny"}',
    ]
    as_csv = vigil("decisions", "sql", "SELECT action, count(*) AS n FROM decisions GROUP BY 1 ORDER BY 1", "-o", "csv")
    assert as_csv.stdout.decode().splitlines() == ["action,n", "deny,2", "dryrun,1"]
    refused = vigil("decisions", "sql", "DROP TABLE decisions")
    assert refused.returncode == 3 and b"refused" in refused.stderr
    out = tmp_path / "pq"
    exported = vigil("decisions", "export", "--parquet", str(out))
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in out.iterdir()) == ["day=2026-01-10", "day=2026-01-11", "day=2026-01-12"]


def test_archiver_reports_a_broken_archive_with_no_backlog_and_recovers(tmp_path: Path, nats_server) -> None:  # type: ignore[no-untyped-def]
    """Started onto a directory that is a regular file (fails for root too) with nothing to
    write: the failure is counted and queries say so; once repaired, the archive reopens."""
    from tests.support import make_settings

    archive_dir = tmp_path / "archive"
    archive_dir.write_text("not a directory\n")
    settings = make_settings(
        tmp_path / "vigil", nats_server.url, ARCHIVE_PATH=str(archive_dir / "d.duckdb"), ARCHIVE_RETRY_MAX="0.2s"
    )

    async def scenario() -> None:
        bus = await open_bus(settings)
        archiver = Archiver(settings)
        try:
            async with running(archiver, settings):
                await wait_for(lambda: archiver.counters["sink_failures"] >= 2)
                with pytest.raises(query.QueryFailed):
                    await client.ask(bus, query.QueryRequest(sql="SELECT count(*) FROM decisions"))
                archive_dir.unlink()
                await wait_for(lambda: _has(bus, 0))
        finally:
            await bus.close()

    asyncio.run(scenario())


def test_a_trickle_of_decisions_is_committed_in_few_transactions(nats_server: Any, tmp_path: Path) -> None:
    """archive.flush_interval: a partial batch keeps pulling for that long before its
    commit, so decisions arriving one by one share transactions (each costs ms)."""
    settings = make_settings(tmp_path / "vigil", nats_server.url, ARCHIVE_FLUSH_INTERVAL="3s")

    async def scenario() -> tuple[int, int]:
        bus = await open_bus(settings)
        archiver = Archiver(settings)
        try:
            async with running(archiver, settings):
                for i in range(20):
                    await publish_one(bus, INTAKE_DECISIONS, gatekeeper_line(i), f"trickle-{i}")
                    await asyncio.sleep(0.02)
                await wait_for(lambda: archiver.counters["archived"] >= 20, timeout=30)
            return archiver.counters["archived"], archiver.counters["commits"]
        finally:
            await bus.close()

    archived, commits = asyncio.run(scenario())
    assert archived == 20
    assert commits <= 3, f"{commits} transactions for 20 decisions in ~0.4 s"
