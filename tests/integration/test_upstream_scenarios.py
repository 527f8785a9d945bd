"""Upstream scenarios through the running product, and event time that a live collector cannot move.

One recorded trace (node "node-1", January 2024) drives three things, collected with `vigil
collect --from` into a Vigil on a real nats-server:

- KubeArmor's throttling e2e (tests/k8s_env/throttling/throttling_test.go @ kubearmor/KubeArmor
  510cee310a16): maxAlertPerSec 2, throttleSec 60; `apt` run 5 times in a loop gives an
  AlertThreshold (Type SystemEvent, Operation AlertThreshold), and `apt update` right after gives
  no alert. Vigil's profile of wordpress is stable, so each apt exec is drift, and deduplication
  is off as KubeArmor has none; the throttle period runs from the first alert of the window
  (feeder.go ShouldDropAlertsPerContainer), so an apt 60.0 s after it passes;
- vArmor's /proc cases (internal/behavior/preprocessor/apparmor_test.go @ bytedance/vArmor
  82baa150f625) and its /tmp, service-account and library rules, in the AppArmor profile a
  modelling window writes;
- SPO's replica coverage (recordingmerger/coverage.go @ kubernetes-sigs/security-profiles-operator
  a2e4c4bdf47d): a replica that made no syscall still counts in ``total``.

Then the same trace goes into a `vigil up` whose live collector ticks on today's wall clock, and
the models, profile events, alerts and decisions of the trace's workload are the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import trace
from contracts.alerts import Alert, AlertThreshold
from contracts.codec import encode_json
from contracts.events import (
    EVENT_TYPES,
    ClockTicked,
    Container,
    ContainerStarted,
    ExecObserved,
    FileAccess,
    FileOpened,
    Process,
    RawEvent,
    SyscallsObserved,
)
from contracts.models import ModelStatusChanged, StartModeling
from contracts.subjects import ALERTS, ALERTS_OUT, DECISIONS, MODELS, PROFILES, models_request_subject
from services.anomaly_detector.app import AnomalyDetector
from services.audit_report_writer.app import AuditReportWriter
from services.profile_learner.app import ProfileLearner
from services.runtime import embedded
from services.runtime.settings import Settings
from services.throttler.app import Throttler
from tests.support import decisions_in, decode_all, make_settings, open_bus, read_stream, running, service_env, wait_for

SEC = 1_000_000_000
MS = SEC // 1000
T0 = 1_704_067_200 * SEC  # 2024-01-01T00:00:00Z: long before the live collector's wall clock
NODE = "node-1"
SP = "RUNTIME_SECURITY_CONFIG_SECURITY_PROFILE_"
ENV = {
    SP + "ANOMALY_DETECTION_WORKLOAD_WARMUP_PERIOD": "5s",
    SP + "ANOMALY_DETECTION_UNSTABLE_PROFILE_TIME_THRESHOLD": "600s",
    **{SP + f"ANOMALY_DETECTION_MINIMUM_STABLE_PERIOD_{t.upper()}": "10s" for t in EVENT_TYPES},
    "MAX_ALERT_PER_SEC": "2",  # the e2e's ConfigMap
    "THROTTLE_SEC": "60",
    "ANOMALY_DETECTOR_DEDUP_WINDOW": "0s",  # every apt is an alert, as every policy match is in KubeArmor
}
REQUEST = StartModeling(id="wp-window", time=T0, image_name="wordpress", image_tag="4.8", duration=20 * SEC)
SHIM, BASH, APT, APACHE = "/usr/bin/containerd-shim-runc-v2", "/bin/bash", "/usr/bin/apt", "/usr/sbin/apache2"


def _pod(name: str) -> Container:
    return Container(
        id=f"wp-{name}",
        image_name="wordpress",
        image_tag="4.8",
        pod=f"wordpress-586468bf4f-{name}",
        namespace="wordpress-mysql",
        name="wordpress",
    )


def _exec(t: float, ctr: Container, path: str, ancestors: tuple[str, ...] = (SHIM,)) -> ExecObserved:
    proc = Process(pid=100, path=path, comm=path.rsplit("/", 1)[-1], ancestors=list(ancestors))
    return ExecObserved(time=T0 + int(t * SEC), node=NODE, container=ctr, process=proc)


def _open(t: float, ctr: Container, path: str, flags: int = 0) -> FileOpened:
    proc = Process(pid=100, path=APACHE, comm="apache2", ancestors=[SHIM])
    return FileOpened(
        time=T0 + int(t * SEC), node=NODE, container=ctr, process=proc, file=FileAccess(path=path, flags=flags)
    )


def _learning(ctr: Container, t: float, extra: bool) -> list[RawEvent]:
    """What a wordpress pod does while its profile is learned (vArmor's /proc paths included)."""
    proc = Process(pid=100, path=APACHE, comm="apache2", ancestors=[SHIM])
    events: list[RawEvent] = [
        ContainerStarted(time=T0 + int(t * SEC), node=NODE, container=ctr),
        _exec(t, ctr, APACHE),
        _open(t, ctr, "/etc/apache2/apache2.conf"),
        _open(t, ctr, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        _open(t, ctr, "/proc/1/map_files/5565eaa95000-5565eaac3000"),
        _open(t, ctr, "/proc/1106048/fdinfo/10"),
        SyscallsObserved(time=T0 + int(t * SEC), node=NODE, container=ctr, process=proc, syscalls=["read", "openat"]),
    ]
    if extra:  # only the first replica: an upload, the service account, a shell (`kubectl exec bash`)
        events += [
            _open(t + 1, ctr, "/tmp/phpA1b2C3", 0o101),
            _open(t + 1, ctr, "/var/run/secrets/kubernetes.io/serviceaccount/..2024_01_04_18_02_26.3917466241/token"),
            _exec(t + 1, ctr, BASH),
            SyscallsObserved(time=T0 + int((t + 1) * SEC), node=NODE, container=ctr, process=proc, syscalls=["write"]),
        ]
    return events


def scenario() -> list[list[RawEvent]]:
    """The trace in three parts (collected one after the other, so a live clock can tick between them)."""
    web, web2, web3 = _pod("8bf6x"), _pod("k2x9q"), _pod("zz7rt")
    learning = [*_learning(web, 0, True), *_learning(web2, 1, False)]
    learning.append(ContainerStarted(time=T0 + 2 * SEC, node=NODE, container=web3))  # a replica that did nothing
    learning += [ClockTicked(time=T0 + s * SEC, node=NODE) for s in range(2, 4)]
    # still learning on the trace's clock (stable at 11 s): learned, not drift
    burst = [_exec(9, web, "/usr/bin/php", (SHIM, APACHE))]
    burst += [ClockTicked(time=T0 + s * SEC, node=NODE) for s in range(9, 30)]  # learning -> stable at 19 s
    burst.append(_exec(30, web, BASH))  # bash -c "count=0; while [ $count -lt 5 ]; do apt; ...; done"
    burst += [_exec(30 + i / 10, web, APT, (SHIM, BASH)) for i in range(5)]
    after = [_exec(40, web, BASH), _exec(40, web, APT, (SHIM, BASH))]  # bash -c "apt update": no alert
    after += [_open(50, web, "/tmp/phpZz9Yx8", 0o101)]  # another upload: the same behaviour, no drift
    after += [_exec(89.999, web, APT, (SHIM, BASH)), _exec(90, web, APT, (SHIM, BASH))]
    after += [ClockTicked(time=T0 + s * SEC, node=NODE) for s in range(31, 100, 3)]
    return [sorted(part, key=lambda e: e.time) for part in (learning, burst, after)]


# --- running it -------------------------------------------------------------------------------------


class Outputs:
    """What the trace's workload produced, read back from the streams and the data dir."""

    def __init__(self, alerts: list[Any], decisions: list[Any], profiles: list[Any], statuses: list[Any], models: Path):
        self.alerts = [(m.headers["Nats-Msg-Id"], m.data) for m in alerts if b'"wordpress"' in m.data]
        self.decisions = sorted(
            (d.id, encode_json(d)) for d in decisions_in(decisions) if getattr(d, "image_name", "") == "wordpress"
        )
        self.profiles = [(m.headers["Nats-Msg-Id"], m.data) for m in profiles if m.subject.endswith(".wordpress")]
        self.statuses = [s for s in decode_all(statuses, ModelStatusChanged) if s.request_id == REQUEST.id]
        self.files = {p.name: p.read_bytes() for p in sorted(models.glob("*"))} if models.exists() else {}


async def read_outputs(settings: Settings) -> Outputs:
    bus = await open_bus(settings)
    try:
        return Outputs(
            await read_stream(bus, ALERTS, ALERTS_OUT),
            await read_stream(bus, DECISIONS),
            await read_stream(bus, PROFILES),
            await read_stream(bus, MODELS, "vigil.models.status.wordpress"),
            settings.data_path / "models" / "wordpress" / "4_8",
        )
    finally:
        await bus.close()


def expected_done(out: Outputs) -> bool:
    return len(out.alerts) >= 4 and any(a.startswith("throttle:") for a, _ in out.decisions) and len(out.statuses) >= 2


async def request_window(settings: Settings) -> None:
    bus = await open_bus(settings)
    try:
        async with bus.publisher() as pub:
            await pub.publish(models_request_subject(REQUEST.image_name), encode_json(REQUEST), REQUEST.id)
            await pub.flush()
    finally:
        await bus.close()


def collect(env: dict[str, str], paths: list[Path], pause: float = 0.0) -> None:
    """`vigil collect --from` each part; ``pause``: wall-clock seconds between them."""
    for i, path in enumerate(paths):
        if i and pause:
            time.sleep(pause)
        done = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "collect", "--from", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


async def _idle_run(settings: Settings, path: list[Path]) -> Outputs:
    """The services in-process, nothing else publishing: no clock but the trace's."""
    apps = [ProfileLearner(settings), AnomalyDetector(settings), Throttler(settings), AuditReportWriter(settings)]
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(running(app, settings))
        await request_window(settings)
        await asyncio.to_thread(collect, service_env(settings), path)
        return await wait_for(lambda: _done(settings), timeout=60)


async def _done(settings: Settings) -> Outputs | None:
    out = await read_outputs(settings)
    return out if expected_done(out) else None


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("trace")
    paths = [root / f"wordpress-{i}.jsonl" for i in range(3)]
    for path, part in zip(paths, scenario(), strict=True):
        path.write_bytes(b"".join(line + b"\n" for line in trace.write(part)))
    return paths


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, recorded: list[Path]) -> Outputs:
    root = tmp_path_factory.mktemp("idle")
    server = embedded.start(root / "nats", port=-1)
    try:
        settings = make_settings(root / "vigil", server.url, **ENV)
        return asyncio.run(_idle_run(settings, recorded))
    finally:
        server.stop()


# --- KubeArmor: tests/k8s_env/throttling ----------------------------------------------------------------


def test_kubearmor_throttling_e2e_shape(idle: Outputs) -> None:
    out = [msg for _, msg in idle.alerts]
    decoded = [msgspec.json.decode(m, type=Alert | AlertThreshold) for m in out]
    assert [type(a).__name__ for a in decoded] == ["Alert", "Alert", "AlertThreshold", "Alert"]
    first, second, threshold, after = (json.loads(m) for m in out)
    assert (first["behaviour"], first["time"], second["time"]) == (APT, T0 + 30 * SEC, T0 + 30 * SEC + 100 * MS)
    assert (threshold["Type"], threshold["Operation"]) == ("SystemEvent", "AlertThreshold")
    assert (threshold["MaxAlertsPerSec"], threshold["DroppingAlertsInterval"]) == (2, 60)
    assert threshold["container"]["pod"] == "wordpress-586468bf4f-8bf6x"
    assert after["time"] == T0 + 90 * SEC  # 60.0 s after the window's first alert: passes, as in KubeArmor
    [throttle] = [json.loads(d) for i, d in idle.decisions if i.startswith("throttle:")]
    # the 3rd to 5th apt of the loop, `apt update`, and the one at 89.999 s: dropped, and counted
    assert (throttle["count"], throttle["time"]) == (5, T0 + 90 * SEC)
    assert throttle["details"]["window_start"] == T0 + 30 * SEC


# --- vArmor's path rules and SPO's coverage, in a modelling window ---------------------------------------


def test_varmor_paths_and_replica_coverage_in_the_modelled_profile(idle: Outputs) -> None:
    assert [s.status for s in idle.statuses] == ["Modeling", "Completed"]
    profile = idle.files["apparmor.profile"].decode()
    for rule in (
        "  /proc/*/map_files/* r,  # coverage 2/3",  # the third replica only started: it still counts
        "  /proc/*/fdinfo/* r,  # coverage 2/3",
        "  owner /tmp/** w,  # coverage 1/3",
        "  /var/run/secrets/kubernetes.io/serviceaccount/** r,  # coverage 1/3",
        "  /usr/lib/x86_64-linux-gnu/** mr,  # coverage 2/3",
        "  /bin/bash ix,  # coverage 1/3",
    ):
        assert rule in profile.splitlines(), rule
    model = json.loads(idle.files["model.json"])
    assert model["replicas"] == 3 and len(model["containers"]) == 3  # the replica that only started counts
    assert model["syscall_coverage"] == {"version": "v1", "total": 3, "syscalls": {"openat": 2, "read": 2, "write": 1}}


# --- a live tick source changes nothing ------------------------------------------------------------------


@contextlib.contextmanager
def vigil_up(data: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    log = open(data.parent / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "up"], env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        yield up
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(60)
        log.close()


def test_a_trace_collected_into_a_live_vigil_gives_what_an_idle_one_gives(
    idle: Outputs, recorded: list[Path], tmp_path: Path
) -> None:
    """`vigil up` with a live collector (synthetic: its events and ticks on today's wall clock, a
    tick every 0.2 s on every partition) while the trace is collected, its parts a second apart so
    the live clock passes through the learner, the detector, the throttler and the writer between
    them: the window, the profile, the alerts and the decisions of the trace's workload are the
    idle run's, byte for byte. (Before each node owned its clock, the live ticks made the profile
    stable early, closed the window at once with "no behaviour observed", and ended throttling.)"""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {"VIGIL_DATA_DIR": str(data), "VIGIL_NATS_PORT": "-1", **{f"VIGIL_{k}": v for k, v in ENV.items()}}
    env |= {"VIGIL_COLLECTOR_SOURCE": "synthetic", "VIGIL_COLLECTOR_SYNTHETIC_RATE": "50"}
    env |= {"VIGIL_COLLECTOR_TICK_INTERVAL": "0.2", "VIGIL_TELEMETRY_HEARTBEAT_INTERVAL": "0.5"}
    with vigil_up(data, env):
        url_file = data / "run" / "nats.url"
        wait_until(url_file.exists)
        settings = make_settings(data, url_file.read_text().split()[0], **ENV)
        wait_until(lambda: asyncio.run(_live_ticks(settings)))  # the live collector's clock is running
        asyncio.run(request_window(settings))
        collect({**env, "VIGIL_NATS_URL": settings.nats.url}, recorded, pause=1.0)
        live = wait_until(lambda: asyncio.run(_done(settings)), timeout=60)
    assert live.files == idle.files and live.statuses == idle.statuses
    assert live.profiles == idle.profiles
    assert live.alerts == idle.alerts
    assert live.decisions == idle.decisions


async def _live_ticks(settings: Settings) -> bool:
    bus = await open_bus(settings)
    try:
        return (await bus.js.stream_info("EVENTS")).state.messages >= 20
    finally:
        await bus.close()


def wait_until(predicate: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)
