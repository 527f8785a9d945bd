"""Behaviour models over a real nats-server: a modelling window run by the
audit-report-writer (request -> Modeling -> events -> Completed + files), and
`vigil profiles export` / `vigil models start|list` as subprocesses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from contracts.codec import encode_batch, encode_json
from contracts.events import ClockTicked, EventBatch
from contracts.models import ModelStatusChanged, StartModeling
from contracts.profiles import BehaviourAdded, ProfileReset
from contracts.subjects import (
    MODELS,
    events_subject,
    models_request_subject,
    models_status_subject,
    partition_of,
    profiles_subject,
)
from services.audit_report_writer.app import build
from services.runtime.settings import Settings
from tests.support import decode_all, open_bus, read_stream, run_vigil, running, wait_for
from tests.unit.golden import GOLDEN_DIR
from tests.unit.golden.behaviour import SEC, T0, replica_events, seed_behaviour


async def _publish_profiles(settings: Settings, extra: list[object]) -> None:
    bus = await open_bus(settings)
    try:
        async with bus.publisher() as pub:
            for event in [*seed_behaviour(), *extra]:
                await pub.publish(profiles_subject(event.image_name), encode_json(event), event.id)  # type: ignore[attr-defined]
            await pub.flush()
    finally:
        await bus.close()


def test_profiles_export_folds_the_learned_version(settings: Settings, tmp_path: Path) -> None:
    wiped = ProfileReset(id="reset-11", time=T0, image_name="debian", image_tag="11")
    exec_only = BehaviourAdded(
        id="busybox-1", time=T0, image_name="busybox", image_tag="1", event_type="exec", behaviour="/bin/sh"
    )
    asyncio.run(_publish_profiles(settings, [wiped, exec_only]))

    # No learner runs here (the PROFILES events are published directly): readiness is unknown,
    # so enforcing exports need --force (tests/integration/test_profiles_readiness.py: with one).
    refused = run_vigil(settings, "profiles", "export", "debian:10", "--format", "seccomp", COLUMNS="200")
    assert refused.returncode == 1 and "readiness unknown" in refused.stderr
    seccomp = run_vigil(settings, "profiles", "export", "debian:10", "--format", "seccomp", "--force")
    assert seccomp.returncode == 0, seccomp.stderr
    assert seccomp.stdout == (GOLDEN_DIR / "seccomp_seed.json").read_text()
    assert "no syscalls were learned" not in seccomp.stderr
    empty = run_vigil(settings, "profiles", "export", "busybox:1", "--format", "seccomp", "--force", COLUMNS="200")
    assert empty.returncode == 0 and json.loads(empty.stdout).get("syscalls", []) == []
    assert "no syscalls were learned for busybox:1" in empty.stderr  # an allow-nothing filter is said out loud

    out = tmp_path / "debian.profile"
    apparmor = run_vigil(settings, "profiles", "export", "debian:10", "-f", "apparmor", "--force", "-o", str(out))
    assert apparmor.returncode == 0, apparmor.stderr
    assert out.read_text() == (GOLDEN_DIR / "apparmor_seed.profile").read_text()

    model = json.loads(run_vigil(settings, "profiles", "export", "debian:10").stdout)
    assert model["kind"] == "model.v1" and model["capabilities"]["known"] is False

    gone = run_vigil(settings, "profiles", "export", "debian:11")  # reset after it was learned
    assert gone.returncode == 1 and "nothing learned" in gone.stderr
    bad = run_vigil(settings, "profiles", "export", "debian:10", "--format", "selinux")
    assert bad.returncode == 2


async def _window(settings: Settings) -> list[ModelStatusChanged]:
    request = StartModeling(
        id="req-1",
        time=T0,
        image_name="nginx",
        image_tag="1.25",
        duration=10 * SEC,
        annotations={"container.models.vigil.dev/proxy": "unconfined"},
    )
    async with running(build(settings), settings):
        bus = await open_bus(settings)
        try:
            async with bus.publisher() as pub:
                await pub.publish(models_request_subject("nginx"), encode_json(request), request.id)
                await pub.flush()

            async def statuses() -> list[ModelStatusChanged]:
                msgs = await read_stream(bus, MODELS, models_status_subject("nginx"))
                return decode_all(msgs, ModelStatusChanged)

            await wait_for(statuses)  # Modeling: the window is open
            events = [*replica_events(T0), ClockTicked(time=T0 + 10 * SEC)]
            part = partition_of("nginx", settings.nats.partitions)  # where a collector puts nginx's events
            batch = EventBatch(node="n1", boot="b1", first_seq=0, partition=part, events=events)
            async with bus.publisher() as pub:
                await pub.publish(events_subject(part), encode_batch(batch), batch.id)
                await pub.flush()
            return await wait_for(lambda: _done(statuses()))
        finally:
            await bus.close()


async def _done(pending: object) -> list[ModelStatusChanged] | None:
    found: list[ModelStatusChanged] = await pending  # type: ignore[misc]
    return found if len(found) >= 2 else None


def test_modelling_window_writes_model_and_profiles(settings: Settings) -> None:
    statuses = asyncio.run(_window(settings))
    assert [s.status for s in statuses] == ["Modeling", "Completed"]
    done = statuses[1]
    assert done.replicas == ["web@a", "web@b"] and done.time == T0 + 10 * SEC
    data = Path(settings.data_dir)
    assert done.files == [
        "models/nginx/1_25/model.json",
        "models/nginx/1_25/apparmor.profile",
        "models/nginx/1_25/seccomp.json",
    ]
    assert (data / done.files[1]).read_text() == (GOLDEN_DIR / "apparmor_replicas.profile").read_text()
    assert (data / done.files[2]).read_text() == (GOLDEN_DIR / "seccomp_replicas.json").read_text()
    assert (data / done.files[0]).read_text() == (GOLDEN_DIR / "model_replicas.json").read_text()

    listed = run_vigil(settings, "models", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["id"] == "req-1" and row["status"] == "Completed" and row["files"] == done.files


def test_models_start_publishes_a_request(settings: Settings) -> None:
    empty = run_vigil(settings, "models", "list", "-o", "json")  # no stream yet: nothing to list, no traceback
    assert empty.returncode == 0 and empty.stdout == "", empty.stderr
    nothing = run_vigil(settings, "profiles", "export", "web:2.0")
    assert nothing.returncode == 1 and "nothing learned" in nothing.stderr
    started = run_vigil(
        settings, "models", "start", "registry:5000/shop/web:2.0", "--duration", "30m",
        "--containers", "web", "--opt-out", "istio-proxy", "--start", "2026-01-01T00:00:00Z",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    listed = run_vigil(settings, "models", "list", "-o", "json")
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["image"] == "registry:5000/shop/web:2.0" and row["status"] == "Requested"
    assert row["duration"] == "1800s" and row["containers"] == "web"

    async def stored() -> StartModeling:
        bus = await open_bus(settings)
        try:
            [msg] = await read_stream(bus, MODELS)
            return decode_all([msg], StartModeling)[0]
        finally:
            await bus.close()

    req = asyncio.run(stored())
    assert req.time == T0 and req.image_name == "registry:5000/shop/web" and req.image_tag == "2.0"
    assert req.annotations == {"container.models.vigil.dev/istio-proxy": "unconfined"}
    bad = run_vigil(settings, "models", "start", "web", "--duration", "soon")
    assert bad.returncode == 2


async def _window_across_restart(settings: Settings) -> list[ModelStatusChanged]:
    request = StartModeling(
        id="req-1",
        time=T0,
        image_name="nginx",
        image_tag="1.25",
        duration=10 * SEC,
        annotations={"container.models.vigil.dev/proxy": "unconfined"},
    )
    events = [*replica_events(T0), ClockTicked(time=T0 + 10 * SEC)]
    part = partition_of("nginx", settings.nats.partitions)
    first = EventBatch(node="n1", boot="b1", first_seq=0, partition=part, events=events[:8])
    second = EventBatch(node="n1", boot="b1", first_seq=8, partition=part, events=events[8:])
    snapshot = Path(settings.data_dir) / "models" / ".windows.json"
    bus = await open_bus(settings)
    try:
        async with running(build(settings), settings):
            async with bus.publisher() as pub:
                await pub.publish(models_request_subject("nginx"), encode_json(request), request.id)
                await pub.flush()
            await wait_for(snapshot.exists)  # the window is open (and persisted)
            async with bus.publisher() as pub:
                await pub.publish(events_subject(part), encode_batch(first), first.id)
                await pub.flush()
            await wait_for(lambda: "web@b" in snapshot.read_text())
        async with running(build(settings), settings):  # a new instance: the window is still open
            async with bus.publisher() as pub:
                await pub.publish(events_subject(part), encode_batch(second), second.id)
                await pub.flush()

            async def statuses() -> list[ModelStatusChanged] | None:
                msgs = await read_stream(bus, MODELS, models_status_subject("nginx"))
                found = decode_all(msgs, ModelStatusChanged)
                return found if len(found) >= 2 else None

            return await wait_for(statuses)
    finally:
        await bus.close()


def test_an_open_window_survives_a_restart(settings: Settings) -> None:
    statuses = asyncio.run(_window_across_restart(settings))
    assert [s.status for s in statuses] == ["Modeling", "Completed"]
    model = Path(settings.data_dir) / statuses[1].files[0]
    assert model.read_text() == (GOLDEN_DIR / "model_replicas.json").read_text()
