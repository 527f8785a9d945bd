"""profile-learner core: warm-up, size limits, the profile cap, operator commands, watermarks, redelivery."""

from __future__ import annotations

from contracts.events import EventBatch
from contracts.profiles import BehaviourAdded, ProfileReset, ResetProfile, SetState, StateChanged
from services.profile_learner import core
from services.profile_learner.paths import access_mask, addr_class, dns_key, generalise_path
from services.profile_learner.sim import Sim, dns_, exec_, ns, open_, start, tick

S = core.SECOND


def cfg(**kw: object) -> core.Config:
    return core.config(stable=10, warmup_period=5 * S, unstable_time=60 * S, **kw)  # type: ignore[arg-type]


def stable_v1(sim: Sim) -> None:
    sim.feed(start(0, "app", "v1"), exec_(1, "app", "v1", "/bin/a"))
    sim.feed(tick(12))
    assert sim.version("app", "v1").states["exec"] == "stable"


def test_container_warmup_in_a_stable_version_learns_without_drift() -> None:
    sim = Sim(cfg())
    stable_v1(sim)
    sim.feed(start(20, "app", "v1", cid="c2"))
    assert sim.feed(exec_(22, "app", "v1", "/bin/warm", cid="c2")) == []  # c2 warming up
    assert sim.of_kind(BehaviourAdded, behaviour="/bin/warm")
    assert sim.version("app", "v1").states["exec"] == "stable"
    drifts = sim.feed(exec_(26, "app", "v1", "/bin/late", cid="c2"))  # warm-up over
    assert [d.behaviour for d in drifts] == ["/bin/late"]
    assert sim.feed(exec_(27, "app", "v1", "/bin/warm")) == []  # learned during warm-up


def test_stable_version_filling_up_in_warmup_goes_at_max_size_and_still_drifts() -> None:
    sim = Sim(cfg(size_threshold=2))
    stable_v1(sim)
    sim.feed(start(20, "app", "v1", cid="c2"))
    sim.feed(exec_(21, "app", "v1", "/bin/b", cid="c2"), exec_(22, "app", "v1", "/bin/c", cid="c2"))
    v1 = sim.version("app", "v1")
    assert (v1.states["exec"], v1.sizes["exec"]) == ("at_max_size", 2)
    drifts = sim.feed(exec_(30, "app", "v1", "/bin/d"))
    assert [(d.reason, d.inserted, d.version_state) for d in drifts] == [("stable_version", False, "at_max_size")]


def test_profiles_beyond_the_cap_are_counted_not_learned_until_one_is_reset() -> None:
    sim = Sim(cfg(max_profiles=2))
    sim.feed(
        exec_(1, "a", "", "/bin/x"),
        exec_(1, "b", "", "/bin/x"),
        exec_(2, "c", "", "/bin/x"),
        exec_(3, "c", "", "/bin/y"),
    )
    assert sorted(sim.state.profiles) == ["a", "b"] and sim.state.over_cap_events == 2
    assert sim.tags("a") == ["latest"]
    assert isinstance(sim.command(ResetProfile(id="r1", image_name="a"))[0], ProfileReset)
    sim.feed(exec_(4, "c", "", "/bin/x"))
    assert sorted(sim.state.profiles) == ["b", "c"]


def test_operator_forces_states_at_the_profile_event_time() -> None:
    sim = Sim(cfg())
    sim.feed(start(0, "app", "v1"), exec_(6, "app", "v1", "/bin/a"))
    evs = sim.command(SetState(id="op1", image_name="app", image_tag="v1", state="stable", event_type="exec"))
    assert [(e.new_state, e.reason, e.time) for e in evs] == [("stable", "operator", ns(6))]
    assert [d.reason for d in sim.feed(exec_(7, "app", "v1", "/bin/b"))] == ["stable_version"]
    sim.command(SetState(id="op2", image_name="app", image_tag="v1", state="learning"))
    assert sim.feed(exec_(8, "app", "v1", "/bin/b")) == []  # learning again: inserted
    sim.feed(tick(17.9))
    assert sim.version("app", "v1").states["exec"] == "learning"
    sim.feed(tick(18))
    assert sim.of_kind(StateChanged, reason="stable_period", event_type="exec")[-1].time == ns(18)
    # the other types were learning already (forcing the same state changes nothing): stable at 10 s
    assert sim.of_kind(StateChanged, reason="stable_period", event_type="dns")[-1].time == ns(10)
    assert not sim.of_kind(StateChanged, reason="operator", event_type="dns")


def test_reset_one_version_forgets_its_behaviour() -> None:
    sim = Sim(cfg())
    stable_v1(sim)
    sim.feed(start(13, "app", "v2", cid="c2"), exec_(19, "app", "v2", "/bin/v2only", cid="c2"))
    sim.command(ResetProfile(id="r", image_name="app", image_tag="v2"))
    assert sim.tags("app") == ["v1"]
    assert [d.behaviour for d in sim.feed(exec_(20, "app", "v1", "/bin/v2only"))] == ["/bin/v2only"]


def test_time_transitions_do_not_depend_on_tick_placement() -> None:
    def changes(with_ticks: bool) -> list[tuple[str, str, int]]:
        sim = Sim(cfg())
        sim.feed(start(0, "app", "v1"), exec_(1, "app", "v1", "/bin/a"))
        if with_ticks:
            for t in range(2, 40):
                sim.feed(tick(t))
        sim.feed(exec_(40, "app", "v1", "/bin/a"))
        return [(e.event_type, e.new_state, e.time) for e in sim.of_kind(StateChanged)]

    assert changes(True) == changes(False)
    assert ("exec", "stable", ns(11)) in changes(False)


def test_drift_batches_advance_the_watermark_each_event_time_second() -> None:
    state, c = core.State(), cfg()

    def batch(seq: int, *evs: object) -> EventBatch:
        return EventBatch(node="n", boot="b", first_seq=seq, partition=3, events=list(evs))  # type: ignore[arg-type]

    _, db = core.apply_batch(state, c, batch(0, tick(0)))
    assert db is not None and db.drifts == [] and db.watermark == ns(0)
    assert core.apply_batch(state, c, batch(1, tick(0.5)))[1] is None
    _, db = core.apply_batch(state, c, batch(2, tick(1)))
    assert db is not None and db.watermark == ns(1)


def test_a_redelivered_batch_changes_nothing() -> None:
    state, c = core.State(), cfg()
    b = EventBatch(node="n", boot="b", first_seq=0, events=[start(0, "app", "v1"), exec_(1, "app", "v1", "/bin/a")])
    first = core.apply_batch(state, c, b)
    before = core.encode_state(state)
    assert core.apply_batch(state, c, b) == ([], None)
    assert core.encode_state(state) == before and first[0]


def test_open_access_and_exec_lineage() -> None:
    sim = Sim(cfg())
    sim.feed(start(0, "app", "v1"), open_(1, "app", "v1", "/etc/app.conf", flags=0))
    sim.feed(open_(2, "app", "v1", "/etc/app.conf", flags=0o2 | 0o100))
    sim.feed(exec_(3, "app", "v1", "/usr/bin/curl", ancestors=("/bin/sh",)))
    assert [b.access for b in sim.of_kind(BehaviourAdded, event_type="open")] == ["r", "rw"]
    assert sim.of_kind(BehaviourAdded, event_type="exec")[0].lineage == ["/bin/sh", "/usr/bin/curl"]
    sim.feed(dns_(4, "app", "v1", "API.Example.COM."))
    assert sim.of_kind(BehaviourAdded, event_type="dns")[0].behaviour == "api.example.com"


def test_generaliser_and_keys() -> None:
    assert generalise_path("/proc/4242/status") == "/proc/*/status"
    assert generalise_path("/var/lib/x/3f2b9c1e-1a2b-4c3d-8e9f-0123456789ab/log") == "/var/lib/x/*/log"
    assert generalise_path("/sys/fs/cgroup/a1b2c3d4e5f60718/cpu.max") == "/sys/fs/cgroup/*/cpu.max"
    assert generalise_path("/usr/lib/libc.so.6") == "/usr/lib/libc.so.6"
    assert generalise_path("/tmp/cache-0123456789abcdef0123/x") == "/tmp/cache-*/x"
    assert access_mask(0o1) == 2 and access_mask(0) == 1 and access_mask(0x20) == 5
    assert dns_key("a.b.c.example.com", 3) == "c.example.com"
    assert addr_class("192.168.1.9") == "192.168.0.0/16" and addr_class("8.8.8.8") == "8.8.8.8"


def test_summary_is_a_profile_summary_with_versions() -> None:
    sim = Sim(cfg())
    stable_v1(sim)
    s = core.summary(sim.state.profiles["app"])
    assert s["image_name"] == "app" and s["event_time"] == ns(12)
    (v1,) = s["versions"]
    assert (v1["image_tag"], v1["states"]["exec"], v1["sizes"]["exec"], v1["size"]) == ("v1", "stable", 1, 1)
    assert (v1["first_seen"], v1["last_seen"]) == (ns(0), ns(1))


def test_settings_switch_event_types_and_profiles_off(tmp_path: object) -> None:
    from pathlib import Path

    from services.profile_learner.app import core_config
    from tests.support import make_settings

    base = "RUNTIME_SECURITY_CONFIG_"
    on = core_config(make_settings(Path(str(tmp_path)), "nats://x:1", **{base + "NETWORK_ENABLED": "false"}))
    assert on.event_types == ("exec", "open", "syscalls")  # network off: no connect, no DNS
    off = core_config(make_settings(Path(str(tmp_path)), "nats://x:1", **{base + "SECURITY_PROFILE_ENABLED": "false"}))
    assert off.event_types == ()
    sim = Sim(off)
    sim.feed(start(0, "app", "v1"), exec_(1, "app", "v1", "/bin/a"))
    assert not sim.of_kind(BehaviourAdded) and sim.tags("app") == ["v1"]


def test_a_batch_stored_out_of_order_is_still_folded_and_a_repeat_is_not() -> None:
    """A publisher retry can store batch 1 after batch 2; the late batch must not be dropped."""
    from contracts.events import Container, ExecObserved, Process

    def batch(first: int, n: int) -> EventBatch:
        events = [
            ExecObserved(
                time=10**9 + first + i,
                container=Container(id="c", image_name="img", image_tag="1"),
                process=Process(pid=i, path=f"/bin/p{first + i}"),
            )
            for i in range(n)
        ]
        return EventBatch(node="n", boot="b", first_seq=first, partition=0, events=events)

    config = cfg()
    in_order, late = core.State(), core.State()
    core.fold(in_order, config, [batch(0, 3), batch(3, 3)])
    core.fold(late, config, [batch(3, 3), batch(0, 3), batch(0, 3), batch(3, 3)])

    def learned(state: core.State) -> list[str]:
        return sorted(state.profiles["img"].versions["1"].behaviours["exec"])  # executable -> lineage keys

    assert learned(late) == learned(in_order) == [f"/bin/p{i}" for i in range(6)]
    assert late.seen == {"n:b:0": [(0, 6)]}
    assert core.unseen([(0, 3), (5, 8)], 2, 10) == [(3, 5), (8, 10)]
    assert core.mark([(0, 3), (5, 8)], 3, 5) == [(0, 8)]
