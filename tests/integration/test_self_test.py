"""`vigil self-test` on a real nats-server with the real learner and archiver:
green when the pipeline works, and each broken link named when it does not."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import duckdb

from contracts.subjects import EVENTS, subject_matches
from services.cli.self_test import SELF_TEST_IMAGE, SelfTestReport, run_self_test
from services.decision_log_archiver.app import Archiver
from services.profile_learner.app import ProfileLearner
from services.runtime.settings import Settings
from tests.support import open_bus, read_stream, running, service_env, vigil_process


async def _with_services(settings: Settings, *apps: object, timeout: float = 20) -> SelfTestReport:
    async with running(apps[0], settings) if apps else _nothing():  # type: ignore[arg-type]
        if len(apps) > 1:
            async with running(apps[1], settings):  # type: ignore[arg-type]
                return await run_self_test(settings, path="trace", timeout=timeout)
        return await run_self_test(settings, path="trace", timeout=timeout)


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _names(report: SelfTestReport, ok: bool) -> set[str]:
    return {c.name for c in report.checks if c.ok == ok}


def test_self_test_passes_through_learner_and_archiver(settings: Settings) -> None:
    learner, archiver = ProfileLearner(settings), Archiver(settings)
    report = asyncio.run(_with_services(settings, learner, archiver))
    assert report.ok, report.checks
    assert report.path.startswith("trace")
    assert {"learner consumed the events", "decision archived", "services alive"} <= _names(report, True)
    assert learner.counters["events"] >= 4  # exec, open, open, DNS (+ container start/stop)
    con = duckdb.connect(str(archiver.path), read_only=True)
    rows = con.execute("SELECT id, source FROM decisions WHERE source = 'self_test'").fetchall()
    assert len(rows) == 1 and rows[0][0].startswith("self_test:")


def test_self_test_publishes_exec_open_dns_of_the_test_workload(settings: Settings) -> None:
    async def scenario() -> list[bytes]:
        await _with_services(settings, ProfileLearner(settings), Archiver(settings))
        bus = await open_bus(settings)
        try:
            return [m.data for m in await read_stream(bus, EVENTS)]
        finally:
            await bus.close()

    from contracts.codec import decode_batch

    events = [ev for data in scenario_run(scenario) for ev in decode_batch(data).events]
    kinds = {type(ev).__name__ for ev in events}
    assert {"ExecObserved", "FileOpened", "DnsQueried"} <= kinds
    assert all(ev.container.image_name == SELF_TEST_IMAGE for ev in events)


def scenario_run(coro_fn):  # type: ignore[no-untyped-def]
    return asyncio.run(coro_fn())


def test_self_test_names_the_learner_when_it_is_not_running(settings: Settings) -> None:
    report = asyncio.run(_with_services(settings, Archiver(settings), timeout=1.5))
    assert not report.ok
    failed = _names(report, False)
    assert "services alive" in failed
    assert "learner consumed the events" in failed
    assert "decision archived" not in failed  # the archiver ran: only the broken link is named


def test_self_test_names_the_archive_when_the_archiver_is_not_running(settings: Settings) -> None:
    report = asyncio.run(_with_services(settings, ProfileLearner(settings), timeout=1.5))
    failed = _names(report, False)
    assert "decision archived" in failed
    assert "learner consumed the events" not in failed


def test_self_test_fails_with_bus_named_when_nothing_runs(tmp_path: Path) -> None:
    from tests.support import make_settings

    settings = make_settings(tmp_path / "v", "nats://127.0.0.1:1")
    report = asyncio.run(run_self_test(settings, path="trace", timeout=1))
    assert [c.name for c in report.checks] == ["bus reachable"] and not report.ok


def test_cli_prints_ok_and_exits_zero_against_running_services(settings: Settings, tmp_path: Path) -> None:
    async def ready() -> None:
        bus = await open_bus(settings)
        await bus.close()

    asyncio.run(ready())
    with vigil_process(settings, "run", "profile-learner"), vigil_process(settings, "run", "decision-log-archiver"):
        proc = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "self-test", "--timeout", "30"],
            env=service_env(settings),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Runtime self test: OK" in proc.stdout
    assert "activity path: trace" in proc.stdout


def test_cli_exits_one_and_names_failures(settings: Settings) -> None:
    async def ready() -> None:
        await (await open_bus(settings)).close()

    asyncio.run(ready())
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "self-test", "--timeout", "1"],
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Runtime self test: FAILED" in proc.stdout and "learner consumed the events" in proc.stdout


def test_subject_matching_follows_nats_wildcards() -> None:
    assert subject_matches("vigil.events.*", "vigil.events.3")
    assert subject_matches("vigil.>", "vigil.events.3")
    assert not subject_matches("vigil.events.1", "vigil.events.3")
    assert not subject_matches("vigil.events.*", "vigil.events.3.x")


def test_switched_off_runtime_security_fails_the_self_test_by_name(nats_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.support import make_settings

    off = make_settings(tmp_path / "v", nats_server.url, RUNTIME_SECURITY_CONFIG_ENABLED="false")
    report = asyncio.run(_with_services(off, ProfileLearner(off), Archiver(off)))
    assert _names(report, False) == {"runtime security enabled"}
    assert "runtime_security_config.enabled is false" in report.checks[1].detail


def test_network_switched_off_sends_no_dns_activity(nats_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from contracts.codec import decode_batch
    from tests.support import make_settings

    s = make_settings(tmp_path / "v", nats_server.url, RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED="false")

    async def scenario() -> tuple[SelfTestReport, list[bytes]]:
        report = await _with_services(s, ProfileLearner(s), Archiver(s))
        bus = await open_bus(s)
        try:
            return report, [m.data for m in await read_stream(bus, EVENTS)]
        finally:
            await bus.close()

    report, batches = asyncio.run(scenario())
    assert report.ok, report.checks
    kinds = {type(ev).__name__ for data in batches for ev in decode_batch(data).events}
    assert "DnsQueried" not in kinds and {"ExecObserved", "FileOpened"} <= kinds
    assert "not tested (switched off): dns" in next(
        c.detail for c in report.checks if c.name == "runtime security enabled"
    )
