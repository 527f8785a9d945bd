"""`vigil alerts list|tail` against a real nats-server: contract objects out,
filters applied, AlertThreshold shown, clock messages never shown."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from contracts.alerts import Alert, AlertClock, AlertThreshold
from contracts.codec import encode_json
from contracts.events import Container
from contracts.subjects import ALERTS_CLOCK, ALERTS_OUT
from services.runtime.settings import Settings
from tests.support import open_bus, run_vigil, service_env

T0 = 1_767_225_600_000_000_000
WEB = Container(id="c1", image_name="nginx", image_tag="1.25", pod="web-0", namespace="shop", name="nginx")
DB = Container(id="c2", image_name="mysql", image_tag="8")
MESSAGES = [
    (
        ALERTS_OUT,
        Alert(id="a1", time=T0, event_type="exec", container=WEB, behaviour="/bin/sh", severity="high", title="t1"),
    ),
    (ALERTS_CLOCK, AlertClock(id="k1", time=T0, source="vigil.drift.0")),
    (
        ALERTS_OUT,
        Alert(id="a2", time=T0 + 1, event_type="dns", container=DB, behaviour="x.example.com", severity="low"),
    ),
    (ALERTS_OUT, AlertThreshold(id="t1", time=T0 + 2, container=WEB, MaxAlertsPerSec=10, DroppingAlertsInterval=30)),
]


async def _publish(settings: Settings, prefix: str = "") -> None:
    bus = await open_bus(settings)
    try:
        async with bus.publisher() as pub:
            for subject, message in MESSAGES:
                await pub.publish(subject, encode_json(message), prefix + message.id)
            await pub.flush()
    finally:
        await bus.close()


def test_list_since_prints_stored_alerts_as_json_lines_with_filters(settings: Settings) -> None:
    asyncio.run(_publish(settings))
    every = run_vigil(settings, "alerts", "list", "--since", "10m", "-o", "json")
    assert every.returncode == 0, every.stderr
    assert [json.loads(line)["id"] for line in every.stdout.splitlines()] == ["a1", "a2", "t1"]
    web = run_vigil(
        settings, "alerts", "list", "--since", "10m", "--container", "c1", "--rule", "anomaly_detection", "-o", "json"
    )
    assert [json.loads(line)["id"] for line in web.stdout.splitlines()] == ["a1"]
    by_image = run_vigil(settings, "alerts", "list", "--since", "10m", "--image", "mysql:8", "-o", "json")
    (line,) = by_image.stdout.splitlines()
    assert json.loads(line) == {
        "kind": "alert.v1",
        "id": "a2",
        "time": T0 + 1,
        "event_type": "dns",
        "severity": "low",
        "container": {"id": "c2", "image_name": "mysql", "image_tag": "8"},
        "behaviour": "x.example.com",
    }
    table = run_vigil(settings, "alerts", "list", "--since", "10m", "--rule", "AlertThreshold")
    assert "AlertThreshold over 10/s" in table.stdout and "t1" not in table.stdout and "1 alerts" in table.stderr
    every_table = run_vigil(settings, "alerts", "list", "--since", "10m")
    # the span stated is the alerts' own (event) time, not when the command ran
    assert "3 alerts, event time 2026-01-01T00:00:00Z to 2026-01-01T00:00:00Z" in every_table.stderr
    bad = run_vigil(settings, "alerts", "list", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_tail_follows_new_alerts_only(settings: Settings) -> None:
    asyncio.run(_publish(settings))  # already stored: tail must not show these
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "alerts", "tail", "--container", "c1", "-n", "2", "-o", "json"],
        env=service_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None and "following" in proc.stderr.readline()
        asyncio.run(_publish(settings, prefix="again-"))
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert [json.loads(line)["kind"] for line in out.splitlines()] == ["alert.v1", "alert_threshold.v1"]
