"""anomaly-detector → throttler on a real nats-server: a container whose
profile is stable bursts novel execs; exactly the expected alerts reach
vigil.alerts.out and the expected decisions reach DECISIONS; replaying the same
DRIFT input on a fresh server gives byte-identical outputs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contracts.alerts import Alert, AlertThreshold
from contracts.codec import encode_batch
from contracts.decisions import Decision
from contracts.events import Container
from contracts.profiles import DriftBatch
from contracts.subjects import ALERTS, ALERTS_OUT, DECISIONS, drift_subject
from services.anomaly_detector.app import AnomalyDetector
from services.anomaly_detector.core import NS
from services.runtime import embedded
from services.runtime.settings import Settings
from services.throttler.app import Throttler
from tests.support import alerts_and_decisions, decode_all, make_settings, open_bus, read_stream, running, wait_for
from tests.unit.test_anomaly_detector import WEB, exec_drift

T0 = 1_767_225_600 * NS
MS = NS // 1000
REDIS = Container(id="r1", image_name="redis", image_tag="7", pod="redis-0", namespace="cache")
ENV = {
    "MAX_ALERT_PER_SEC": "2",
    "THROTTLE_SEC": "60",
    "ANOMALY_DETECTOR_DEDUP_WINDOW": "60s",
    "ANOMALY_DETECTOR_SUPPRESSIONS": "[{executable: /usr/bin/getconf}]",
}


def scenario() -> list[DriftBatch]:
    """nginx (stable) bursts 5 novel execs in 50 ms plus one repeat; redis drifts once;
    a suppressed getconf; then time passes both windows and nginx drifts again."""
    burst = [exec_drift(f"/usr/bin/tool{i}", T0 + i * 10 * MS, i) for i in range(5)]
    return [
        DriftBatch(drifts=[*burst, exec_drift("/usr/bin/tool0", T0 + 50 * MS, 5)], watermark=T0 + 60 * MS),
        DriftBatch(drifts=[exec_drift("/bin/sh", T0 + 70 * MS, 6, container=REDIS)], watermark=T0 + 80 * MS),
        DriftBatch(drifts=[exec_drift("/usr/bin/getconf", T0 + 90 * MS, 7)], watermark=T0 + 90 * MS),
        DriftBatch(drifts=[], watermark=T0 + 61 * NS),
        DriftBatch(drifts=[exec_drift("/usr/bin/tool9", T0 + 61_500 * MS, 9)], watermark=T0 + 62 * NS),
    ]


async def _publish(settings: Settings, batches: list[DriftBatch]) -> None:
    bus = await open_bus(settings)
    try:
        async with bus.publisher() as pub:
            for batch in batches:
                await pub.publish(drift_subject(0), encode_batch(batch), f"drift-test:{batch.watermark}")
            await pub.flush()
    finally:
        await bus.close()


async def _count(settings: Settings, stream: str) -> int:
    bus = await open_bus(settings)
    try:
        return (await bus.js.stream_info(stream)).state.messages
    finally:
        await bus.close()


async def _run_pipeline(settings: Settings, expected_decisions: int) -> tuple[list, list]:
    """Publish the scenario, run both services in-process until every decision is
    stored; return (alerts.out messages, decision messages) as raw NATS messages."""
    await _publish(settings, scenario())
    async with running(AnomalyDetector(settings), settings), running(Throttler(settings), settings):
        await wait_for(lambda: _at_least(settings, DECISIONS, expected_decisions), timeout=30)
        await wait_for(lambda: _out_has(settings, "out:alert:d9"), timeout=30)
    return await alerts_and_decisions(settings)


async def _at_least(settings: Settings, stream: str, n: int) -> bool:
    return await _count(settings, stream) >= n


async def _out_has(settings: Settings, msg_id: str) -> bool:
    bus = await open_bus(settings)
    try:
        msgs = await read_stream(bus, ALERTS, ALERTS_OUT)
    finally:
        await bus.close()
    return any((m.headers or {}).get("Nats-Msg-Id") == msg_id for m in msgs)


EXPECTED_DECISIONS = [
    ("anomaly:d0", "alert", 1),
    ("anomaly:d1", "alert", 1),
    ("anomaly:d2", "alert", 1),
    ("anomaly:d3", "alert", 1),
    ("anomaly:d4", "alert", 1),
    ("anomaly:d6", "alert", 1),
    ("anomaly:d7", "suppress", 1),
    ("dedup:anomaly:d0", "dedup", 1),  # the repeat of tool0
    ("anomaly:d9", "alert", 1),
    ("throttle:threshold:alert:d2", "throttle", 3),  # tool2 (the excess), tool3, tool4 dropped
]


def test_burst_after_stable_profile_gives_exactly_the_expected_alerts_and_decisions(
    settings: Settings, tmp_path: Path
) -> None:
    settings = make_settings(Path(settings.data_dir), settings.nats.url, **ENV)
    out_msgs, decision_msgs = asyncio.run(_run_pipeline(settings, len(EXPECTED_DECISIONS)))
    out = decode_all(out_msgs, Alert | AlertThreshold)
    assert [(type(a).__name__, a.id) for a in out] == [
        ("Alert", "alert:d0"),
        ("Alert", "alert:d1"),
        ("AlertThreshold", "threshold:alert:d2"),
        ("Alert", "alert:d6"),  # redis: another container, unaffected
        ("Alert", "alert:d9"),  # nginx again once the 60 s throttle window ended
    ]
    threshold = out[2]
    assert (threshold.MaxAlertsPerSec, threshold.DroppingAlertsInterval, threshold.container) == (2, 60, WEB)
    assert out[0].severity == "medium" and out[0].lineage[-1] == "/usr/bin/tool0" and out[0].version_state == "stable"

    decisions = decode_all(decision_msgs, Decision)
    assert sorted((d.id, d.action, d.count) for d in decisions) == sorted(EXPECTED_DECISIONS)
    by_subject = {m.subject for m in decision_msgs}
    assert by_subject == {"vigil.decisions.anomaly", "vigil.decisions.throttle"}
    throttle = next(d for d in decisions if d.action == "throttle")
    assert throttle.time == T0 + 60 * NS and throttle.container_id == "c1"  # from the window's first alert (KubeArmor)


def test_replay_of_the_same_drift_gives_byte_identical_outputs(settings: Settings, tmp_path: Path) -> None:
    first = make_settings(Path(settings.data_dir), settings.nats.url, **ENV)
    server = embedded.start(tmp_path / "nats-replay", port=-1)
    try:
        second = make_settings(tmp_path / "vigil-replay", server.url, **ENV)
        runs = [asyncio.run(_run_pipeline(s, len(EXPECTED_DECISIONS))) for s in (first, second)]
    finally:
        server.stop()

    def payloads(msgs: list) -> list[tuple[str, str, bytes]]:
        return sorted((m.subject, m.headers["Nats-Msg-Id"], m.data) for m in msgs)

    (out_a, dec_a), (out_b, dec_b) = runs
    assert [m.data for m in out_a] == [m.data for m in out_b]  # alerts.out: same order, same bytes
    assert payloads(dec_a) == payloads(dec_b)
    assert len(out_a) == 5 and len(dec_a) == len(EXPECTED_DECISIONS)


async def _run_until(settings: Settings, batches: list[DriftBatch], decisions: int, out_id: str) -> None:
    await _publish(settings, batches)
    async with running(AnomalyDetector(settings), settings), running(Throttler(settings), settings):
        await wait_for(lambda: _at_least(settings, DECISIONS, decisions), timeout=30)
        await wait_for(lambda: _out_has(settings, out_id), timeout=30)


@pytest.mark.parametrize("snapshots", ["kept", "lost"])
def test_a_restart_mid_window_loses_and_duplicates_nothing(settings: Settings, snapshots: str) -> None:
    """Stop both services while the dedup window and the throttle window are open;
    with their snapshots (graceful stop) or without (a crash before any snapshot:
    state is rebuilt silently from the log up to the ack floor)."""
    settings = make_settings(Path(settings.data_dir), settings.nats.url, **ENV)
    batches = scenario()
    asyncio.run(_run_until(settings, batches[:3], decisions=7, out_id="out:alert:d6"))
    snapshot_files = [settings.data_path / name / "snapshot.bin" for name in ("anomaly-detector", "throttler")]
    assert all(f.exists() for f in snapshot_files)
    if snapshots == "lost":
        for f in snapshot_files:
            f.unlink()
    asyncio.run(_run_until(settings, batches[3:], decisions=len(EXPECTED_DECISIONS), out_id="out:alert:d9"))
    out_msgs, decision_msgs = asyncio.run(alerts_and_decisions(settings))
    assert [a.id for a in decode_all(out_msgs, Alert | AlertThreshold)] == [
        "alert:d0",
        "alert:d1",
        "threshold:alert:d2",
        "alert:d6",
        "alert:d9",
    ]
    decisions = decode_all(decision_msgs, Decision)
    assert sorted((d.id, d.action, d.count) for d in decisions) == sorted(EXPECTED_DECISIONS)
