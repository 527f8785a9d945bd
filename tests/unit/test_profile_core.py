"""profile-learner core: warm-up, size limits, the profile cap, operator commands, watermarks, redelivery."""

from __future__ import annotations

from msgspec.structs import replace

from contracts.events import ClockTicked, EventBatch
from contracts.profiles import BehaviourAdded, ProfileReset, ResetProfile, SetState, StateChanged
from services.profile_learner import core
from services.profile_learner.paths import access_mask, addr_class, dns_key, generalise_path
from services.profile_learner.sim import dns_, exec_, ns, open_, start, tick
from tests.sim import Sim

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


# --- temp files: one behaviour per upload, and the drift guarantee -------------------------------------

O_WRONLY_CREAT = 0o1 | 0o100
FMODE_EXEC = 0x20


def test_each_upload_temp_file_is_the_same_behaviour() -> None:
    """LID-DS Apache/PHP: every upload goes to /tmp/phpXXXXXX; once learned, the next upload's
    new random name is no new behaviour (it was one alert per upload)."""
    sim = Sim(cfg())
    sim.feed(start(0, "web", "1"), open_(1, "web", "1", "/tmp/phpA1b2C3", O_WRONLY_CREAT, exe="/usr/sbin/apache2"))
    sim.feed(tick(12))
    assert sim.version("web", "1").states["open"] == "stable"
    uploads = [
        open_(20 + i, "web", "1", f"/tmp/php{name}", O_WRONLY_CREAT, exe="/usr/sbin/apache2")
        for i, name in enumerate(["Zz9Yx8", "qwerty", "ABCDEF", "a1B2c3"])
    ]
    assert sim.feed(*uploads) == []
    assert [e.behaviour for e in sim.of_kind(BehaviourAdded, event_type="open")] == ["/tmp/php*"]


def test_a_file_written_under_tmp_then_executed_is_still_drift() -> None:
    """The learner keeps finer keys than the AppArmor profile's /tmp/**: writing a temp file is
    known, executing it (the exec, and its open for execution) is new."""
    sim = Sim(cfg())
    sim.feed(start(0, "web", "1"), open_(1, "web", "1", "/tmp/phpA1b2C3", O_WRONLY_CREAT, exe="/usr/sbin/apache2"))
    sim.feed(exec_(2, "web", "1", "/usr/sbin/apache2"), tick(12))
    sim.feed(open_(20, "web", "1", "/tmp/phpQ7r8S9", O_WRONLY_CREAT, exe="/usr/sbin/apache2"))
    drifts = sim.feed(
        open_(21, "web", "1", "/tmp/phpQ7r8S9", FMODE_EXEC, exe="/usr/sbin/apache2"),
        exec_(21, "web", "1", "/tmp/phpQ7r8S9", ancestors=("/usr/sbin/apache2", "/bin/sh")),
    )
    assert [(d.event_type, d.behaviour, d.reason) for d in drifts] == [
        ("open", "/tmp/php*", "stable_version"),
        ("exec", "/tmp/phpQ7r8S9", "stable_version"),
    ]


# --- event time per node ---------------------------------------------------------------------------------


def test_a_live_nodes_ticks_never_advance_a_replayed_traces_profile() -> None:
    """A trace recorded on n1 replayed beside a live collector ("live", today's wall clock): the live
    ticks on the same partition leave the trace's profile alone, so it stays learning until the
    trace's own clock says so, and learns what comes next instead of reporting it as drift."""
    day = 86_400 * S
    sim = Sim(cfg())
    sim.feed(start(0, "app", "v1"), exec_(1, "app", "v1", "/bin/a"))
    sim.feed(ClockTicked(time=ns(1) + day, node="live"))
    assert sim.version("app", "v1").states["exec"] == "warmup" and sim.state.containers  # warm-up not ended either
    assert sim.feed(exec_(8, "app", "v1", "/bin/b")) == []  # still learning on its own clock
    sim.feed(tick(20))
    assert sim.version("app", "v1").states["exec"] == "stable"
    assert sim.state.profiles["app"].nodes == {"n1": ns(0)}


def test_the_nameless_nodes_ticks_move_every_profile() -> None:
    sim = Sim(cfg())
    sim.feed(start(0, "app", "v1"), exec_(1, "app", "v1", "/bin/a"))
    sim.feed(ClockTicked(time=ns(12)))
    assert sim.version("app", "v1").states["exec"] == "stable"


def test_drift_batches_carry_each_nodes_clock() -> None:
    state = core.State()
    events = [exec_(0, "app", "v1", "/bin/a"), replace(tick(3), node="live"), tick(1)]
    _, db = core.apply_batch(state, cfg(), EventBatch(node="n1", boot="b", first_seq=0, events=events))
    assert db is not None and db.clocks == {"live": ns(3), "n1": ns(1)} and db.watermark == ns(3)
    _, db = core.apply_batch(state, cfg(), EventBatch(node="n1", boot="b", first_seq=3, events=[tick(2)]))
    assert db is not None and db.clocks == {"n1": ns(2)}  # n1 moved a second since it was last published


def test_a_snapshot_from_before_nodes_were_recorded_loads_and_follows_every_nodes_ticks() -> None:
    import msgspec

    sim = Sim(cfg())
    sim.feed(start(0, "app", "v1"), exec_(1, "app", "v1", "/bin/a"))
    old = msgspec.to_builtins(sim.state)
    for key in ("container_nodes", "node_watermarks", "node_published"):
        del old[key]
    for prof in old["profiles"].values():
        del prof["nodes"]
    sim.state = core.decode_state(msgspec.msgpack.encode(old))
    assert sim.state.profiles["app"].nodes == {} and sim.state.container_nodes == {}
    sim.feed(ClockTicked(time=ns(12), node="another-node"))  # nothing recorded: every node's ticks count
    assert sim.version("app", "v1").states["exec"] == "stable"
