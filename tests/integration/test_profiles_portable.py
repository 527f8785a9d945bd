"""Portable profiles and network policies through real nats-servers, the learner in-process and
the CLI as subprocesses: `vigil profiles export --format json` from one Vigil, `vigil profiles
import` into a fresh Vigil (same `profiles show`) and into one that learned part of it (the
union), `vigil replay profile-learner` matching the snapshot after the import; NetworkPolicy and
CiliumNetworkPolicy exports selecting pods by the workload registry's labels, and DOT."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from collector.publisher import BatchingPublisher
from collector.workloads import bucket, put
from contracts.codec import encode_json
from contracts.events import EVENT_TYPES, RawEvent
from contracts.profiles import BehaviourAdded, CommandApplied, ProfileEvent
from contracts.subjects import PROFILES, partition_of, profiles_subject
from contracts.workloads import Workload
from services.cli.replay import replay_profile_learner
from services.profile_learner.app import ProfileLearner
from services.profile_learner.sim import connect_, dns_, exec_, open_, start, syscalls_, tick
from services.runtime import embedded
from services.runtime.bus import Bus
from services.runtime.settings import Settings
from tests.support import make_settings, open_bus, read_stream, run_vigil, running, wait_for

SP = "RUNTIME_SECURITY_CONFIG_SECURITY_PROFILE_"
ENV = {
    SP + "SNAPSHOT_INTERVAL": "0.2s",
    SP + "ANOMALY_DETECTION_WORKLOAD_WARMUP_PERIOD": "5s",
    SP + "ANOMALY_DETECTION_UNSTABLE_PROFILE_TIME_THRESHOLD": "600s",
    **{SP + f"ANOMALY_DETECTION_MINIMUM_STABLE_PERIOD_{t.upper()}": "10s" for t in EVENT_TYPES},
}
# What `profiles show` says of a version that a document carries (the rest counts this cluster's
# own containers: starts, replicas, drift, loss, which an import does not transfer).
LEARNED = ("image_tag", "first_seen", "last_seen", "states", "sizes", "size", "last_new")
_profile_dec = msgspec.json.Decoder(ProfileEvent)


def web(image: str = "web", tag: str = "v1") -> list[RawEvent]:
    shim = ("/usr/bin/containerd-shim", "/bin/sh")
    return [
        start(0, image, tag),
        exec_(1, image, tag, "/usr/sbin/nginx", ancestors=shim),
        open_(1, image, tag, "/etc/nginx/nginx.conf", exe="/usr/sbin/nginx"),
        open_(2, image, tag, "/var/log/nginx/access.log", flags=0o2001, exe="/usr/sbin/nginx"),
        dns_(2, image, tag, "api.github.com"),
        connect_(2, image, tag, "10.1.2.3", 5432, exe="/usr/sbin/nginx"),
        connect_(2, image, tag, "93.184.216.34", 443, exe="/usr/sbin/nginx"),
        syscalls_(2, image, tag, ["read", "write", "epoll_wait"], exe="/usr/sbin/nginx"),
        tick(20),  # stable for every type (10 s without anything new)
    ]


def partly(image: str = "web", tag: str = "v1") -> list[RawEvent]:
    """Some of web() (one access bit short), and a health check web() never did."""
    shim = ("/usr/bin/containerd-shim", "/bin/sh")
    return [
        start(100, image, tag),
        exec_(101, image, tag, "/usr/sbin/nginx", ancestors=shim),
        exec_(102, image, tag, "/bin/healthcheck", ancestors=shim),
        syscalls_(102, image, tag, ["read"], exe="/usr/sbin/nginx"),
    ]


@asynccontextmanager
async def another_vigil(tmp_path: Path, name: str) -> AsyncIterator[Settings]:
    server = embedded.start(tmp_path / f"nats-{name}", port=-1)
    try:
        yield make_settings(tmp_path / f"vigil-{name}", server.url, **ENV)
    finally:
        server.stop()


async def publish(settings: Settings, events: list[RawEvent], boot: str) -> None:
    bus = await open_bus(settings)
    try:
        async with bus.publisher() as pub:
            batcher = BatchingPublisher(pub, "n1", boot, settings.nats.partitions, 100)
            await batcher.add_all(events)
            await batcher.drain()
    finally:
        await bus.close()


async def profile_events(bus: Bus) -> list[ProfileEvent]:
    return [_profile_dec.decode(m.data) for m in await read_stream(bus, PROFILES)]


async def until(settings: Settings, kind: type, count: int) -> None:
    """Until PROFILES holds ``count`` events of ``kind`` (BehaviourAdded: learned; CommandApplied: applied)."""
    bus = await open_bus(settings)
    try:

        async def enough() -> bool:
            return sum(isinstance(e, kind) for e in await profile_events(bus)) >= count

        await wait_for(enough, timeout=30)
    finally:
        await bus.close()


async def cli(settings: Settings, *args: str) -> Any:
    """`vigil ARGS…` in a thread, so the in-process learner keeps answering queries."""
    done = await asyncio.to_thread(run_vigil, settings, *args, COLUMNS="200")
    assert done.returncode == 0, done.stderr
    return done


async def version(settings: Settings, image: str, tag: str) -> dict[str, Any]:
    shown = json.loads((await cli(settings, "profiles", "show", image, "-o", "json")).stdout)
    found = next(v for v in shown["versions"] if v["image_tag"] == tag)
    return {k: v for k, v in found.items() if k in LEARNED}


async def import_into(settings: Settings, doc: Path, *extra: str) -> int:
    """Import, wait until the learner applied every command; how many commands there were."""
    out = (await cli(settings, "profiles", "import", str(doc), *extra)).stdout
    sent = int(out.split("sent ", 1)[1].split(" ", 1)[0])
    await until(settings, CommandApplied, sent)
    return sent


def test_export_then_import_into_a_fresh_vigil_and_into_one_that_learned_part_of_it(
    tmp_path: Path, nats_server: embedded.EmbeddedServer
) -> None:
    asyncio.run(_portable(tmp_path, make_settings(tmp_path / "vigil-a", nats_server.url, **ENV)))


async def _portable(tmp_path: Path, source: Settings) -> None:
    doc = tmp_path / "web-v1.json"
    learner = ProfileLearner(source)
    async with running(learner, source):
        await publish(source, web(), "boot-a")
        await until(source, BehaviourAdded, 8)
        await wait_for(lambda: _stable(learner, source), timeout=30)
        await cli(source, "profiles", "export", "web:v1", "--format", "json", "-o", str(doc))
        want = await version(source, "web", "v1")
    exported = json.loads(doc.read_text())
    assert exported["kind"] == "profile_document.v1" and exported["event_types"]["exec"]["state"] == "stable"

    async with another_vigil(tmp_path, "fresh") as fresh:
        async with running(ProfileLearner(fresh), fresh):
            sent = await import_into(fresh, doc)
            assert await version(fresh, "web", "v1") == want
        replayed = json.loads((await cli(fresh, "replay", "profile-learner", "-o", "json")).stdout)
        assert replayed["result"] == "match" and replayed["commands"] == sent, replayed  # after the snapshot

    async with another_vigil(tmp_path, "partial") as partial:
        learner = ProfileLearner(partial)
        async with running(learner, partial):
            await publish(partial, partly(), "boot-c")
            await until(partial, BehaviourAdded, 3)
            before = _version(learner, partial)
            await import_into(partial, doc)
            after = await version(partial, "web", "v1")
            union = tmp_path / "union.json"
            await cli(partial, "profiles", "export", "web:v1", "--format", "json", "-o", str(union))
        assert after["states"] == before["states"] and after["first_seen"] == before["first_seen"]
        assert after["sizes"]["exec"] == 2 and after["sizes"]["open"] == want["sizes"]["open"]
        assert after["sizes"]["syscalls"] == want["sizes"]["syscalls"]  # "read" was known on both sides
        assert _behaviours(union) == _behaviours(doc) | {("exec", "/bin/healthcheck")}
        replayed = await replay_profile_learner(partial)  # what `vigil replay profile-learner` runs
        assert replayed["result"] == "match", replayed


def _version(learner: ProfileLearner, settings: Settings) -> dict[str, Any]:
    """The learner's own answer (what `profiles show` prints), without a CLI round trip."""
    prof = learner.query("web", partition_of("web", settings.nats.partitions))["profile"] or {"versions": [{}]}
    [v] = prof["versions"]
    return {k: x for k, x in v.items() if k in LEARNED}


def _stable(learner: ProfileLearner, settings: Settings) -> bool:
    return set(_version(learner, settings).get("states", {}).values()) == {"stable"}


def _behaviours(path: Path) -> set[tuple[str, str]]:
    doc = json.loads(path.read_text())
    return {(et, b["behaviour"]) for et, t in doc["event_types"].items() for b in t["behaviours"]}


def test_import_refuses_what_is_not_a_profile_document(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "model.json"
    bad.write_text('{"kind": "model.v1", "profile_name": "p", "image_name": "web"}')
    done = run_vigil(settings, "profiles", "import", str(bad))
    assert done.returncode == 2 and "not a Vigil profile document" in done.stderr


# --- network policies and DOT from the PROFILES stream ------------------------------------------


async def _seed(settings: Settings, workloads: list[Workload]) -> None:
    from tests.unit.test_netpol import network_behaviour

    bus = await open_bus(settings)
    try:
        async with bus.publisher() as pub:
            for event in network_behaviour():
                await pub.publish(profiles_subject(event.image_name), encode_json(event), event.id)
            await pub.flush()
        kv = await bucket(bus.js)
        for w in workloads:
            await put(kv, w)
    finally:
        await bus.close()


def test_policies_select_the_pods_by_the_labels_the_registry_holds(settings: Settings) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    from tests.unit.test_netpol import IMAGE, TAG, validate_cilium, workloads

    asyncio.run(_seed(settings, workloads()))
    np = run_vigil(
        settings, "profiles", "export", f"{IMAGE}:{TAG}", "--format", "networkpolicy", "--force", COLUMNS="200"
    )
    assert np.returncode == 0, np.stderr
    policy = yaml.safe_load(np.stdout)
    kubernetes_validate.validate(policy, "1.30.0", strict=True)
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app": "web", "tier": "front"}
    assert policy["metadata"]["namespace"] == "shop"
    assert "selector app=web,tier=front" in np.stderr

    cnp = run_vigil(settings, "profiles", "export", f"{IMAGE}:{TAG}", "--format", "ciliumnetworkpolicy", "--force")
    assert cnp.returncode == 0, cnp.stderr
    validate_cilium(yaml.safe_load(cnp.stdout))
    assert yaml.safe_load(cnp.stdout)["spec"]["endpointSelector"]["matchLabels"] == {"app": "web", "tier": "front"}

    dot = run_vigil(settings, "profiles", "export", f"{IMAGE}:{TAG}", "--format", "dot")
    assert dot.returncode == 0 and dot.stdout.startswith("digraph ") and "tcp 93.184.216.34:443" in dot.stdout


def test_a_placeholder_selector_is_said_on_stderr(settings: Settings) -> None:
    from tests.unit.test_netpol import IMAGE, TAG

    asyncio.run(_seed(settings, []))
    np = run_vigil(
        settings, "profiles", "export", f"{IMAGE}:{TAG}", "--format", "networkpolicy", "--force", COLUMNS="200"
    )
    assert np.returncode == 0, np.stderr
    assert "placeholder" in np.stderr and "app.kubernetes.io/name=web" in np.stderr
    assert yaml.safe_load(np.stdout)["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "web"}
