"""`vigil status` on a real bus: consumer lag, dead letters, archive backlog,
live services, switches, and `--require` as a readiness probe."""

from __future__ import annotations

import asyncio
import json
import subprocess

from contracts.codec import encode_json
from contracts.decisions import Decision
from contracts.subjects import decisions_subject, events_subject
from services.profile_learner.app import ProfileLearner
from services.runtime.bus import publish_one
from services.runtime.settings import Settings
from tests.support import make_settings, open_bus, run_vigil, running, wait_for


async def _scenario(
    settings: Settings,
) -> tuple[dict, subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    bus = await open_bus(settings)
    try:
        for i in range(3):  # nobody archives yet: a backlog of 3
            d = Decision(id=f"d{i}", time=i, source="self_test", event_type="self_test")
            await publish_one(bus, decisions_subject("self_test"), encode_json(d), d.id)
        await publish_one(bus, events_subject(0), b"not msgpack", "bad-1")
        async with running(ProfileLearner(settings), settings) as runner:
            await wait_for(lambda: runner.app.counters["dead_letters"] >= 1)
            await wait_for(lambda: _beat_counts_dead_letter(bus))
            report = await asyncio.to_thread(
                run_vigil, settings, "status", "-o", "json", VIGIL_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED="false"
            )
            ready = await asyncio.to_thread(run_vigil, settings, "status", "--require", "profile-learner")
            not_ready = await asyncio.to_thread(run_vigil, settings, "status", "--require", "throttler")
        return json.loads(report.stdout), ready, not_ready
    finally:
        await bus.close()


async def _beat_counts_dead_letter(bus) -> bool:  # type: ignore[no-untyped-def]
    from services.runtime.diagnostics import heartbeats

    return any(b["counters"].get("dead_letters") for b in await heartbeats(bus))


def test_status_reports_lag_dead_letters_backlog_services_and_switches(nats_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "vigil", nats_server.url, TELEMETRY_HEARTBEAT_INTERVAL="0.2")

    async def archiver_consumer() -> None:
        # the archiver's durable exists (as after its first start) but is stopped: lag = backlog
        from contracts.subjects import DECISIONS, ConsumerSpec

        bus = await open_bus(settings)
        try:
            await bus.pull(ConsumerSpec(DECISIONS, "decision-log-archiver"))
        finally:
            await bus.close()

    asyncio.run(archiver_consumer())
    report, ready, not_ready = asyncio.run(_scenario(settings))
    summary = report["summary"]
    assert summary["dead_letters"] == 1
    assert summary["archive_backlog"] == 3
    assert summary["total_lag"] >= 3
    assert "profile-learner" in {s["service"] for s in report["services"]}
    assert "throttler" in summary["not_running"]
    assert summary["metrics"]["services"]["profile-learner"]["dead_letters"] == 1
    assert report["switches"]["runtime_security_config.network.enabled"] is False
    assert report["switches"]["alert_throttling"] is True
    assert ready.returncode == 0 and "ready: profile-learner" in ready.stdout
    assert not_ready.returncode == 1 and "throttler" in not_ready.stderr
