"""profile-learner + version-evictor through a real nats-server: traces published with
`vigil collect --from`, drift and profile events read back from the streams, the CLI against
the running learner, replay against its snapshot, and a SIGKILL mid-stream."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import msgspec
import pytest

from collector.publisher import BatchingPublisher
from contracts import trace
from contracts.codec import decode_batch, decode_drift
from contracts.events import EVENT_TYPES, RawEvent
from contracts.profiles import BehaviourAdded, CommandApplied, DriftBatch, ProfileEvent, StateChanged, VersionEvicted
from contracts.subjects import DRIFT, EVENTS, PROFILES, drift_subject, events_subject, partition_of
from services.profile_learner import core
from services.profile_learner.app import ProfileLearner, backlog, core_config
from services.profile_learner.sim import dns_, exec_, ns, start, syscalls_, tick
from services.runtime.embedded import EmbeddedServer
from services.runtime.partitions import owners
from services.runtime.settings import Settings
from services.version_evictor.app import VersionEvictor
from tests.support import make_settings, open_bus, read_stream, run_vigil, running, vigil_process, wait_for

LEARNER = ProfileLearner.name
SP = "RUNTIME_SECURITY_CONFIG_SECURITY_PROFILE_"
ENV = {
    SP + "MAX_IMAGE_TAGS": "2",
    SP + "SNAPSHOT_INTERVAL": "0.2s",
    SP + "ANOMALY_DETECTION_WORKLOAD_WARMUP_PERIOD": "5s",
    SP + "ANOMALY_DETECTION_UNSTABLE_PROFILE_TIME_THRESHOLD": "60s",
    **{SP + f"ANOMALY_DETECTION_MINIMUM_STABLE_PERIOD_{t.upper()}": "10s" for t in EVENT_TYPES},
    "NATS_ACK_WAIT": "1s",
}
_profile_dec = msgspec.json.Decoder(ProfileEvent)


@pytest.fixture
def lc_settings(tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in ENV.items():
        monkeypatch.setenv(f"VIGIL_{key}", value)  # for `vigil …` subprocesses
    return make_settings(tmp_path / "vigil", nats_server.url, **ENV)


def write_trace(path: Path, events: list[RawEvent]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in trace.write(events)))
    return path


def collect(settings: Settings, path: Path) -> None:
    with vigil_process(settings, "collect", "--from", str(path)) as proc:
        assert proc.wait(60) == 0


async def drifts(bus: object) -> list[tuple[str, str, str, bool, str]]:
    msgs = await read_stream(bus, DRIFT)  # type: ignore[arg-type]
    return [
        (d.image_tag, d.behaviour, d.reason, d.inserted, d.stable_tag)
        for m in msgs
        for d in decode_drift(m.data).drifts
    ]


async def profile_events(bus: object) -> list[ProfileEvent]:
    return [_profile_dec.decode(m.data) for m in await read_stream(bus, PROFILES)]  # type: ignore[arg-type]


def test_eviction_life_cycle_end_to_end_with_cli_and_replay(lc_settings: Settings, tmp_path: Path) -> None:
    asyncio.run(_eviction_life_cycle(lc_settings, tmp_path))


async def _eviction_life_cycle(settings: Settings, tmp_path: Path) -> None:
    """The seed's eviction trace; the CLI is run in threads so the in-process services keep serving."""
    phase1 = [
        start(0, "app", "v1"),
        exec_(7, "app", "v1", "/bin/b"),
        exec_(20, "app", "v1", "/bin/c"),
        start(21, "app", "v2", cid="c2"),
        exec_(27, "app", "v2", "/bin/d", cid="c2"),
        start(40, "app", "v3", cid="c3"),
    ]
    phase2 = [exec_(47, "app", "v3", "/bin/b", cid="c3"), tick(48)]
    bus = await open_bus(settings)
    try:
        async with running(ProfileLearner(settings), settings), running(VersionEvictor(settings), settings):
            await asyncio.to_thread(collect, settings, write_trace(tmp_path / "phase1.jsonl", phase1))
            await wait_for(lambda: _has(bus, VersionEvicted), timeout=30)
            await asyncio.to_thread(collect, settings, write_trace(tmp_path / "phase2.jsonl", phase2))
            expected = [
                ("v1", "/bin/c", "stable_version", False, ""),
                ("v2", "/bin/d", "other_version_stable", True, "v1"),
                ("v3", "/bin/b", "other_version_stable", True, "v2"),  # v1, which knew /bin/b, was evicted
            ]
            await wait_for(lambda: _drifts_are(bus, expected), timeout=30)
            evicted = [e for e in await profile_events(bus) if isinstance(e, VersionEvicted)]
            assert [e.image_tag for e in evicted] == ["v1"]

            shown = await asyncio.to_thread(run_vigil, settings, "profiles", "show", "app", "-o", "json")
            assert shown.returncode == 0, shown.stderr
            prof = json.loads(shown.stdout)
            assert [v["image_tag"] for v in prof["versions"]] == ["v2", "v3"]
            assert prof["versions"][0]["states"]["exec"] == "stable" and prof["versions"][1]["sizes"]["exec"] == 1
            listed = await asyncio.to_thread(run_vigil, settings, "profiles", "list", "-o", "json")
            assert json.loads(listed.stdout.splitlines()[0])["image_name"] == "app"

            sent = await asyncio.to_thread(
                run_vigil, settings, "profiles", "set-state", "app", "v3", "stable", "--event-type", "exec"
            )
            assert sent.returncode == 0, sent.stderr
            await wait_for(lambda: _has(bus, CommandApplied), timeout=30)
            changed = [e for e in await profile_events(bus) if isinstance(e, StateChanged) and e.reason == "operator"]
            assert [(e.image_tag, e.event_type, e.new_state) for e in changed] == [("v3", "exec", "stable")]
        offline = await asyncio.to_thread(run_vigil, settings, "profiles", "show", "app", "-o", "json")
        assert offline.returncode == 0, offline.stderr
        assert [v["image_tag"] for v in json.loads(offline.stdout)["versions"]] == ["v2", "v3"]  # from the snapshot
        table = await asyncio.to_thread(run_vigil, settings, "profiles", "show", "app", COLUMNS="200")
        first_seen = json.loads(offline.stdout)["versions"][0]["first_seen"]
        assert trace.format_time(first_seen)[:19] + "Z" in table.stdout  # the table shows times in UTC, not ns
        replayed = await asyncio.to_thread(
            run_vigil, settings, "replay", "profile-learner", "-o", "json"
        )  # the learner stopped: snapshot written
        report = json.loads(replayed.stdout)
        assert report["result"] == "match" and report["commands"] == 2, report  # the eviction + the operator's
    finally:
        await bus.close()


def test_dns_and_syscall_life_cycle_end_to_end(lc_settings: Settings, tmp_path: Path) -> None:
    asyncio.run(_dns_and_syscalls(lc_settings, tmp_path))


async def _dns_and_syscalls(settings: Settings, tmp_path: Path) -> None:
    """LifeCycleDNS and the syscall life-cycle in one trace: stable anomalies, a learning v2 beside
    a stable v1 (a name matched on its last 3 labels is known), all through `vigil collect --from`."""
    events = [
        start(0, "web", "v1"),
        dns_(7, "web", "v1", "a.example.com"),
        syscalls_(7, "web", "v1", ["read"]),
        tick(18),
        dns_(20, "web", "v1", "b.example.com"),
        syscalls_(20, "web", "v1", ["read", "ptrace"]),
        start(21, "web", "v2", cid="c2"),
        dns_(27, "web", "v2", "www.a.example.com", cid="c2"),
        dns_(28, "web", "v2", "c.example.com", cid="c2"),
        tick(30),
    ]
    expected = [
        ("v1", "b.example.com", "stable_version", False, ""),
        ("v1", "ptrace", "stable_version", False, ""),
        ("v2", "c.example.com", "other_version_stable", True, "v1"),
    ]
    bus = await open_bus(settings)
    try:
        async with running(ProfileLearner(settings), settings):
            await asyncio.to_thread(collect, settings, write_trace(tmp_path / "dns.jsonl", events))
            await wait_for(lambda: _drifts_are(bus, expected), timeout=30)
            added = [(e.image_tag, e.behaviour) for e in await profile_events(bus) if isinstance(e, BehaviourAdded)]
            assert ("v2", "a.example.com") in added and ("v1", "ptrace") not in added
            watermarks = [decode_drift(m.data).watermark for m in await read_stream(bus, DRIFT)]
            assert watermarks == sorted(watermarks) and watermarks[-1] == ns(30)
    finally:
        await bus.close()


async def _has(bus: object, kind: type) -> bool:
    return any(isinstance(e, kind) for e in await profile_events(bus))


async def _drifts_are(bus: object, expected: list[tuple[str, str, str, bool, str]]) -> bool:
    got = await drifts(bus)
    assert len(got) <= len(expected), got
    return got == expected


def busy_trace(images: int = 40, rounds: int = 1500, repeats: str = "/bin/known") -> list[RawEvent]:
    """Images learn for 12 s, then repeat known behaviour with a novel one now and then.
    ``repeats`` may name the round (``"/usr/bin/known-{r7}"``: 7 paths learned nowhere, drift)."""
    events: list[RawEvent] = []
    for i in range(images):
        events += [start(0, f"img{i}", "v1", cid=f"c{i}"), exec_(6, f"img{i}", "v1", "/bin/known", cid=f"c{i}")]
    events.append(tick(20))
    for r in range(rounds):
        t = 20 + r * 0.01
        for i in range(images):
            path = f"/bin/new{r}" if r % 97 == 0 else repeats.format(r7=r % 7)
            events.append(exec_(t, f"img{i}", "v1", path, cid=f"c{i}"))
        if r % 100 == 0:
            events.append(tick(t))
    return events


def test_sigkill_mid_stream_then_restart_gives_the_same_outputs_once(lc_settings: Settings, tmp_path: Path) -> None:
    asyncio.run(_sigkill_mid_stream(lc_settings, tmp_path))


async def _sigkill_mid_stream(settings: Settings, tmp_path: Path) -> None:
    bus = await open_bus(settings)
    try:
        async with bus.publisher() as pub:
            batcher = BatchingPublisher(pub, "n1", "boot-kill", settings.nats.partitions, 200)
            await batcher.add_all(busy_trace())
            await batcher.drain()
        log = tmp_path / "learner.log"
        with vigil_process(settings, "run", "profile-learner", log=log) as proc:
            await wait_for(lambda: _acked(bus, settings), timeout=60, interval=0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert not await _done(bus, settings), (
            "the learner finished before the kill; the trace is too small to test a crash"
        )
        with vigil_process(settings, "run", "profile-learner", log=log):
            await wait_for(lambda: _done(bus, settings), timeout=90)
        await assert_outputs_are_the_reference(bus, settings)
    finally:
        await bus.close()


async def assert_outputs_are_the_reference(bus: object, settings: Settings) -> None:
    """PROFILES and DRIFT hold exactly, once, what the pure core folded over each
    partition's EVENTS gives (one state per partition)."""
    want_events, want_drift = await reference_fold(bus, settings)
    got_events = by_partition(await profile_events(bus), settings)
    got_drift = {p: [decode_drift(m.data) for m in await read_stream(bus, DRIFT, drift_subject(p))] for p in want_drift}  # type: ignore[arg-type]
    assert sum(len(d.drifts) for ds in want_drift.values() for d in ds) > 0
    assert got_events == want_events
    assert got_drift == want_drift


async def reference_fold(
    bus: object, settings: Settings
) -> tuple[dict[int, list[ProfileEvent]], dict[int, list[DriftBatch]]]:
    """What the learner must have published: the pure core over each partition's EVENTS, in order."""
    events, drift = {}, {}
    for p in range(settings.nats.partitions):
        batches = [decode_batch(m.data) for m in await read_stream(bus, EVENTS, events_subject(p))]  # type: ignore[arg-type]
        events[p], drift[p] = core.fold(core.State(), core_config(settings), batches)
    return events, drift


def by_partition(events: list[ProfileEvent], settings: Settings) -> dict[int, list[ProfileEvent]]:
    out: dict[int, list[ProfileEvent]] = {p: [] for p in range(settings.nats.partitions)}
    for e in events:
        out[partition_of(e.image_name, settings.nats.partitions)].append(e)
    return out


async def _acked(bus: object, settings: Settings) -> bool:
    """The learner acked some of EVENTS (it is working)."""
    total = (await bus.js.stream_info(EVENTS)).state.messages  # type: ignore[attr-defined]
    return await backlog(bus.js, settings.nats.partitions) < total  # type: ignore[attr-defined]


async def _done(bus: object, settings: Settings) -> bool:
    return await backlog(bus.js, settings.nats.partitions) == 0  # type: ignore[attr-defined]


def test_settings_reach_the_core(lc_settings: Settings) -> None:
    cfg = core_config(lc_settings)
    assert cfg.stable_period["exec"] == 10 * core.SECOND and cfg.warmup_period == 5 * core.SECOND
    assert cfg.unstable_time == 60 * core.SECOND and cfg.dns_depth == 3


def test_two_learners_split_the_partitions_and_one_takes_over_after_a_sigkill(
    lc_settings: Settings, tmp_path: Path
) -> None:
    asyncio.run(_two_learners(lc_settings, tmp_path))


async def _two_learners(settings: Settings, tmp_path: Path) -> None:
    """Scale-out: two `vigil run profile-learner` processes share the 4 partitions 2 + 2;
    one is SIGKILLed mid-stream, the other takes its partitions over (after the lease
    expired) and finishes; the outputs are exactly the per-partition reference, once."""
    bus = await open_bus(settings)
    try:
        log = tmp_path / "learners.log"
        with (
            vigil_process(settings, "run", "profile-learner", log=log) as first,
            vigil_process(settings, "run", "profile-learner", log=log) as second,
        ):
            await wait_for(lambda: _split_between_two(bus, settings), timeout=30, interval=0.05)  # 2 + 2
            async with bus.publisher() as pub:
                batcher = BatchingPublisher(pub, "n1", "boot-two", settings.nats.partitions, 200)
                await batcher.add_all(busy_trace(rounds=2500))
                await batcher.drain()
            await wait_for(lambda: _acked(bus, settings), timeout=60, interval=0.01)
            first.send_signal(signal.SIGKILL)
            first.wait()
            assert not await _done(bus, settings), "finished before the kill; the trace is too small"
            await wait_for(lambda: _done(bus, settings), timeout=90)
            owned = await owners(bus, LEARNER, settings.nats.partitions)
            assert len(owned) == settings.nats.partitions and len(set(owned.values())) == 1  # the survivor has all
            assert second.poll() is None
        await assert_outputs_are_the_reference(bus, settings)
    finally:
        await bus.close()


async def _split_between_two(bus: object, settings: Settings) -> dict[str, list[int]] | None:
    owned = await owners(bus, LEARNER, settings.nats.partitions)  # type: ignore[arg-type]
    by_owner: dict[str, list[int]] = {}
    for p, owner in owned.items():
        by_owner.setdefault(owner, []).append(p)
    return by_owner if sorted(len(ps) for ps in by_owner.values()) == [2, 2] else None
