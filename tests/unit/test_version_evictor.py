"""version-evictor: least recently seen versions go past max_image_tags; metrics."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from contracts.codec import decode_json, encode_json
from contracts.profiles import EvictVersion, ProfileReset, VersionEvicted, VersionFirstSeen
from contracts.subjects import partition_of
from services.runtime.service import Incoming
from services.version_evictor import core
from services.version_evictor.app import VersionEvictor
from tests.support import make_settings


def seen(tag: str, versions: dict[str, int], image: str = "app") -> VersionFirstSeen:
    return VersionFirstSeen(
        id=f"pl:{tag}", time=max(versions.values()), image_name=image, image_tag=tag, versions=versions
    )


def test_evicts_the_least_recently_seen_other_version() -> None:
    st = core.State()
    assert core.handle(st, seen("v2", {"v1": 10, "v2": 20}), 2) == []
    cmds = core.handle(st, seen("v3", {"v1": 30, "v2": 20, "v3": 5}), 2)  # v3 is the newest, never evicted
    assert [(c.image_tag, c.last_seen) for c in cmds] == [("v2", 20)]
    assert cmds[0].id == "evict:pl:v3:v2"


def test_pending_evictions_are_not_asked_twice_and_confirmation_clears_them() -> None:
    st = core.State()
    core.handle(st, seen("v3", {"v1": 1, "v2": 2, "v3": 3}), 2)
    # the learner has not applied the eviction of v1 yet when v4 shows up
    cmds = core.handle(st, seen("v4", {"v1": 1, "v2": 2, "v3": 3, "v4": 4}), 2)
    assert [c.image_tag for c in cmds] == ["v2"]
    assert core.version_counts(st) == {"app": 2}
    core.handle(st, VersionEvicted(id="e1", time=5, image_name="app", image_tag="v1"), 2)
    assert st.pending["app"] == ["v2"]
    core.handle(st, ProfileReset(id="r", time=6, image_name="app"), 2)
    assert core.version_counts(st) == {}


def test_app_publishes_commands_and_counts_evictions(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    app = VersionEvictor(
        make_settings(tmp_path, "nats://127.0.0.1:1", RUNTIME_SECURITY_CONFIG_SECURITY_PROFILE_MAX_IMAGE_TAGS="1"),
        MeterProvider(metric_readers=[reader]),
    )

    def inc(ev: object, seq: int) -> Incoming:
        return Incoming(
            id=f"m{seq}", subject="vigil.profiles.app", stream="PROFILES", seq=seq, data=encode_json(ev), headers={}
        )

    outs = app.handle(inc(seen("v2", {"v1": 1, "v2": 2}), 1))
    assert [o.subject for o in outs] == [f"vigil.commands.{partition_of('app', app.settings.nats.partitions)}.app"]
    cmd = decode_json("command", outs[0].data)
    assert isinstance(cmd, EvictVersion) and cmd.image_tag == "v1"
    app.handle(inc(VersionEvicted(id="e", time=3, image_name="app", image_tag="v1"), 2))
    data = reader.get_metrics_data()
    points = {
        m.name: list(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    evicted = points["security_profile.evicted_versions"]
    assert [(dict(p.attributes), p.value) for p in evicted] == [({"image_name": "app", "image_tag": "v1"}, 1)]
    assert [(dict(p.attributes), p.value) for p in points["security_profile.versions"]] == [({"image_name": "app"}, 1)]
