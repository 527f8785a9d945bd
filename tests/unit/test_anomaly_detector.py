"""anomaly-detector core: drift → alert with context, severity, dedup counts,
suppressions, windows closed by the partition watermark."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from msgspec.structs import replace

from contracts.alerts import Alert, AlertClock
from contracts.decisions import Decision
from contracts.events import Container, DnsQueried, DnsQuery, ExecObserved, FileAccess, FileOpened, Process
from contracts.profiles import Drift, DriftBatch
from services.anomaly_detector import core
from services.anomaly_detector.core import NS, Config, State, Suppression

T0 = 1_700_000_000 * NS
SRC = "vigil.drift.0"
WEB = Container(id="c1", image_name="nginx", image_tag="1.25", pod="web-0", namespace="shop", name="nginx")


def exec_drift(path: str, t: int, n: int = 0, container: Container = WEB, reason: str = "stable_version") -> Drift:
    proc = Process(
        pid=100 + n,
        ppid=1,
        uid=0,
        comm=path.rsplit("/", 1)[-1],
        path=path,
        ancestors=["/usr/bin/containerd-shim", "/usr/sbin/nginx"],
    )
    return Drift(
        id=f"d{n}",
        time=t,
        image_name=container.image_name,
        image_tag=container.image_tag,
        event_type="exec",
        behaviour=path,
        version_state="stable" if reason == "stable_version" else "learning",
        reason=reason,  # type: ignore[arg-type]
        inserted=reason != "stable_version",
        stable_tag="1.25" if reason == "stable_version" else "1.24",
        container=container,
        event=ExecObserved(time=t, node="n1", container=container, process=proc),
        event_id=f"ev{n}",
    )


def dns_drift(name: str, t: int, n: int = 0) -> Drift:
    proc = Process(pid=7, path="/usr/bin/curl")
    return Drift(
        id=f"q{n}",
        time=t,
        image_name="nginx",
        image_tag="1.25",
        event_type="dns",
        behaviour=name,
        version_state="stable",
        reason="stable_version",
        inserted=False,
        container=WEB,
        event=DnsQueried(time=t, container=WEB, process=proc, dns=DnsQuery(name=name)),
    )


def open_drift(path: str, flags: int, t: int = T0) -> Drift:
    proc = Process(pid=7, path="/usr/sbin/nginx")
    return Drift(
        id="o1",
        time=t,
        image_name="nginx",
        image_tag="1.25",
        event_type="open",
        behaviour=path,
        version_state="stable",
        reason="stable_version",
        inserted=False,
        container=WEB,
        event=FileOpened(time=t, container=WEB, process=proc, file=FileAccess(path=path, flags=flags)),
    )


def run(
    drifts: list[Drift], watermark: int = 0, config: Config = Config(), state: State | None = None
) -> list[core.Output]:
    return core.handle_batch(
        state if state is not None else State(), config, SRC, DriftBatch(drifts=drifts, watermark=watermark)
    )


def of(outputs: list[core.Output], tp: type) -> list:
    return [o for o in outputs if isinstance(o, tp)]


def test_drift_becomes_an_alert_with_full_context_and_a_decision() -> None:
    out = run([exec_drift("/bin/sh", T0)])
    alert, decision = out
    assert isinstance(alert, Alert) and isinstance(decision, Decision)
    assert alert.id == "alert:d0" and alert.rule_id == "anomaly_detection" and alert.event_type == "exec"
    assert alert.container == WEB and alert.time == T0
    assert alert.lineage == ["/usr/bin/containerd-shim", "/usr/sbin/nginx", "/bin/sh"]
    assert alert.process is not None and alert.process.path == "/bin/sh"
    assert isinstance(alert.event, ExecObserved) and alert.event_id == "ev0"
    assert (alert.image_tag, alert.version_state, alert.drift_reason, alert.stable_tag) == (
        "1.25",
        "stable",
        "stable_version",
        "1.25",
    )
    assert alert.severity == "high"
    assert (decision.id, decision.source, decision.action, decision.rule) == (
        "anomaly:d0",
        "anomaly",
        "alert",
        "anomaly_detection",
    )
    assert (decision.container_id, decision.pod, decision.resource_namespace, decision.image_name) == (
        "c1",
        "web-0",
        "shop",
        "nginx",
    )
    assert decision.details["alert_id"] == alert.id


def test_severity_table() -> None:
    cases = {
        "/tmp/x": "critical",
        "/dev/shm/payload": "critical",
        "/bin/bash": "high",
        "/usr/bin/python3.11": "high",
        "/usr/bin/getconf": "medium",
        "/usr/bin/ncdu": "medium",
    }
    for path, expected in cases.items():
        assert core.severity(exec_drift(path, T0)) == expected, path
    assert core.severity(dns_drift("evil.example.com", T0)) == "low"
    assert core.severity(open_drift("/etc/shadow", 0)) == "high"
    assert core.severity(open_drift("/etc/nginx/conf.d/x", 1)) == "high"  # O_WRONLY under /etc
    assert core.severity(open_drift("/etc/nginx/conf.d/x", 0)) == "low"
    # drifting while the version itself is learning (another version stable): one level lower
    assert core.severity(exec_drift("/bin/sh", T0, reason="other_version_stable")) == "medium"
    assert core.severity(exec_drift("/usr/bin/getconf", T0, reason="other_version_stable")) == "low"


def test_repeats_in_the_dedup_window_become_one_count_when_the_watermark_closes_it() -> None:
    state = State()
    cfg = Config(dedup_window_ns=60 * NS)
    first = run(
        [exec_drift("/bin/sh", T0, 0), exec_drift("/bin/sh", T0 + NS, 1)], watermark=T0 + NS, config=cfg, state=state
    )
    assert len(of(first, Alert)) == 1 and len(of(first, Decision)) == 1
    more = run([exec_drift("/bin/sh", T0 + 59 * NS, 2)], watermark=T0 + 59 * NS, config=cfg, state=state)
    assert of(more, Alert) == [] and of(more, Decision) == []
    closing = run([], watermark=T0 + 60 * NS, config=cfg, state=state)
    (dedup,) = of(closing, Decision)
    assert (dedup.action, dedup.count, dedup.time, dedup.id) == ("dedup", 2, T0 + 60 * NS, "dedup:anomaly:d0")
    assert dedup.details["first_decision_id"] == "anomaly:d0" and dedup.details["last"] == T0 + 59 * NS
    assert state.windows == {}
    again = run([exec_drift("/bin/sh", T0 + 61 * NS, 3)], config=cfg, state=state)
    assert [a.id for a in of(again, Alert)] == ["alert:d3"]


def test_a_drift_at_exactly_the_window_end_is_a_new_alert_and_closes_the_old_window() -> None:
    state = State()
    run([exec_drift("/bin/sh", T0, 0), exec_drift("/bin/sh", T0 + 1, 1)], state=state)
    out = run([exec_drift("/bin/sh", T0 + 60 * NS, 2)], state=state)
    assert [type(o).__name__ for o in out] == ["Decision", "Alert", "Decision"]
    assert (out[0].action, out[0].count) == ("dedup", 1)  # type: ignore[union-attr]
    assert out[1].id == "alert:d2"


def test_a_window_without_repeats_closes_silently_and_other_keys_are_independent() -> None:
    state = State()
    out = run(
        [exec_drift("/bin/sh", T0, 0), exec_drift("/bin/ls", T0, 1), dns_drift("a.example.com", T0, 2)], state=state
    )
    assert len(of(out, Alert)) == 3
    closing = run([], watermark=T0 + 61 * NS, state=state)
    assert of(closing, Decision) == [] and state.windows == {}


def test_windows_close_on_their_own_partition_watermark_only() -> None:
    state = State()
    run([exec_drift("/bin/sh", T0, 0), exec_drift("/bin/sh", T0 + 1, 1)], state=state)
    other = core.handle_batch(state, Config(), "vigil.drift.1", DriftBatch(drifts=[], watermark=T0 + 3600 * NS))
    assert of(other, Decision) == []
    assert len(of(run([], watermark=T0 + 60 * NS, state=state), Decision)) == 1


def test_dedup_window_zero_alerts_every_drift() -> None:
    out = run([exec_drift("/bin/sh", T0, 0), exec_drift("/bin/sh", T0, 1)], config=Config(dedup_window_ns=0))
    assert len(of(out, Alert)) == 2


def test_suppressions_by_image_executable_dns_glob_and_event_type() -> None:
    cfg = Config(
        suppressions=(
            Suppression(image="nginx:1.*", executable="/usr/bin/getconf"),
            Suppression(dns="*.cluster.local"),
            Suppression(image="redis", event_type="exec"),
        )
    )
    out = run(
        [
            exec_drift("/usr/bin/getconf", T0, 0),
            dns_drift("db.shop.svc.cluster.local", T0, 1),
            dns_drift("evil.example.com", T0, 2),
            exec_drift("/bin/sh", T0, 3),
            exec_drift("/bin/sh", T0, 4, container=Container(id="r1", image_name="redis", image_tag="7")),
        ],
        config=cfg,
    )
    decisions = of(out, Decision)
    assert [(d.id, d.action) for d in decisions] == [
        ("anomaly:d0", "suppress"),
        ("anomaly:q1", "suppress"),
        ("anomaly:q2", "alert"),
        ("anomaly:d3", "alert"),
        ("anomaly:d4", "suppress"),
    ]
    assert [d.rule for d in decisions if d.action == "suppress"] == [
        "anomaly_detector.suppressions[0]",
        "anomaly_detector.suppressions[1]",
        "anomaly_detector.suppressions[2]",
    ]
    assert [a.id for a in of(out, Alert)] == ["alert:q2", "alert:d3"]


def test_a_dns_glob_never_suppresses_other_event_types() -> None:
    cfg = Config(suppressions=(Suppression(dns="*"),))
    assert not core.suppressed_by(Suppression(dns="*.local"), exec_drift("/bin/sh", T0))
    assert len(of(run([exec_drift("/bin/sh", T0)], config=cfg), Alert)) == 0  # "*" everywhere suppresses all


def test_suppressed_repeats_are_deduplicated_too() -> None:
    state = State()
    cfg = Config(suppressions=(Suppression(executable="/usr/bin/getconf"),))
    out = run(
        [exec_drift("/usr/bin/getconf", T0 + i, i) for i in range(5)], watermark=T0 + 60 * NS, config=cfg, state=state
    )
    assert [(d.action, d.count) for d in of(out, Decision)] == [("suppress", 1), ("dedup", 4)]
    assert of(out, Decision)[1].details["verdict"] == "suppress"


def test_clock_messages_follow_the_watermark_in_steps() -> None:
    state = State()
    assert run([], watermark=T0, state=state) == [AlertClock(id=f"clock:{SRC}:{T0}", time=T0, source=SRC)]
    assert run([], watermark=T0 + core.CLOCK_STEP_NS - 1, state=state) == []
    assert run([], watermark=T0 - NS, state=state) == []  # a watermark never goes back
    assert of(run([], watermark=T0 + core.CLOCK_STEP_NS, state=state), AlertClock)[0].time == T0 + core.CLOCK_STEP_NS


def test_replaying_the_same_batches_gives_the_same_outputs() -> None:
    batches = [
        DriftBatch(
            drifts=[exec_drift("/bin/sh", T0 + i * NS, i), dns_drift(f"h{i % 3}.example.com", T0 + i * NS, i)],
            watermark=T0 + i * NS,
        )
        for i in range(200)
    ]

    def replay() -> list[core.Output]:
        state = State()
        return [o for b in batches for o in core.handle_batch(state, Config(), SRC, b)]

    assert replay() == replay()


def test_a_restored_snapshot_continues_exactly_like_the_original() -> None:
    batches = [
        DriftBatch(
            drifts=[exec_drift(f"/bin/t{i % 7}", T0 + i * NS, i), dns_drift(f"h{i % 3}.example.com", T0 + i * NS, i)],
            watermark=T0 + i * NS,
        )
        for i in range(150)
    ]
    live = State()
    for b in batches[:80]:
        core.handle_batch(live, Config(), SRC, b)
    data = msgspec.msgpack.encode(core.export(live))
    restored = core.restore(msgspec.msgpack.decode(data, type=core.Snapshot))
    rest = batches[80:]
    assert [o for b in rest for o in core.handle_batch(restored, Config(), SRC, b)] == [
        o for b in rest for o in core.handle_batch(live, Config(), SRC, b)
    ]


def test_the_dedup_decision_keeps_the_first_drifts_severity() -> None:
    state = State()
    wrote = open_drift("/etc/nginx/x", flags=1)  # high only because it writes
    run([wrote, replace(wrote, id="o2", time=T0 + 1)], state=state)
    (dedup,) = of(run([], watermark=T0 + 60 * NS, state=state), Decision)
    assert (dedup.severity, dedup.count) == ("high", 1)


@hsettings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40 * NS)), min_size=1, max_size=80),
    window_s=st.integers(0, 90),
)
def test_every_drift_is_an_alert_a_suppression_or_counted_in_a_dedup_decision(steps, window_s) -> None:
    """Conservation: each drift is accounted for exactly once once the watermark has passed."""
    cfg = Config(dedup_window_ns=window_s * NS, suppressions=(Suppression(executable="/bin/b3"),))
    state, t, out = State(), T0, []
    for n, (which, gap) in enumerate(steps):
        t += gap
        out += run([exec_drift(f"/bin/b{which}", t, n)], watermark=t, config=cfg, state=state)
    out += run([], watermark=t + 3600 * NS, config=cfg, state=state)
    decisions = of(out, Decision)
    firsts = [d for d in decisions if d.action in ("alert", "suppress")]
    assert len(firsts) + sum(d.count for d in decisions if d.action == "dedup") == len(steps)
    assert len(of(out, Alert)) == sum(d.action == "alert" for d in firsts)
    assert state.windows == {}


def _numbered() -> list[DriftBatch]:
    """A partition's DriftBatches as the learner numbers them: repeats of one key, so
    the order decides which alert is first and how the window counts."""
    return [
        DriftBatch(drifts=[exec_drift("/bin/sh", T0 + i * NS, i)], watermark=T0 + i * NS + NS // 2, seq=i + 1)
        for i in range(8)
    ] + [DriftBatch(drifts=[], watermark=T0 + 600 * NS, seq=9)]


def _feed(batches: list[DriftBatch], state: State | None = None) -> list[core.Output]:
    state = state if state is not None else State()
    return [o for b in batches for o in core.handle_batch(state, Config(dedup_window_ns=3 * NS), SRC, b)]


def test_batches_stored_out_of_order_are_applied_in_seq_order_and_duplicates_ignored() -> None:
    """After a failover the stream can hold a partition's batches out of order (a lost
    publish sent again after later ones): the outputs are those of the learner's order."""
    batches = _numbered()
    in_order = _feed(batches)
    shuffled = [batches[0], batches[2], batches[1], batches[5], batches[3], batches[4], batches[3], *batches[6:]]
    assert _feed(shuffled) == in_order
    assert len(of(in_order, Alert)) >= 2  # the windows closed and reopened: order mattered
    state = State()
    assert _feed([batches[1], batches[2]], state) == []  # held: seq 1 is missing
    assert sorted(core.export(state).held[SRC], key=lambda b: b.seq) == [batches[1], batches[2]]
    restored = core.restore(core.export(state))  # held batches survive a snapshot
    assert _feed([batches[0], *batches[3:]], restored) == in_order


def test_a_gap_that_never_fills_is_given_up_after_max_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "MAX_HELD", 3)
    batches = _numbered()
    state = State()
    out = _feed(batches[1:], state)  # seq 1 never comes
    assert state.gaps == 1 and state.applied[SRC] == 9 and not state.held
    assert out == _feed([DriftBatch(drifts=b.drifts, watermark=b.watermark) for b in batches[1:]])


# --- one clock per node (docs/runtime.md, "Event time") ------------------------------------------------


def on_node(drift: Drift, node: str) -> Drift:
    return replace(drift, event=replace(drift.event, node=node))


def test_a_live_node_clock_never_closes_a_replayed_trace_window() -> None:
    """The trace's drifts (node "rec") and a live collector's batches (node "live", today's wall
    clock) on one partition: the trace's dedup window closes on its own clock, as without the
    live node, and the clocks for the throttler are per node."""
    day = 86_400 * NS
    trace = [
        DriftBatch(drifts=[on_node(exec_drift("/bin/sh", T0), "rec")], watermark=T0, clocks={"rec": T0}, seq=1),
        DriftBatch(
            drifts=[on_node(exec_drift("/bin/sh", T0 + NS, 1), "rec")],
            watermark=T0 + NS,
            clocks={"rec": T0 + NS},
            seq=2,
        ),
        DriftBatch(drifts=[], watermark=T0 + 61 * NS, clocks={"rec": T0 + 61 * NS}, seq=4),
    ]
    live = DriftBatch(drifts=[], watermark=T0 + day, clocks={"live": T0 + day}, seq=3)

    def outputs(batches: list[DriftBatch]) -> list[core.Output]:
        state = State()
        return [o for b in batches for o in core.handle_batch(state, Config(), SRC, b)]

    alone = outputs([*trace[:2], replace(trace[2], seq=3)])
    mixed = outputs([*trace[:2], live, trace[2]])
    assert [o for o in mixed if not isinstance(o, AlertClock)] == [o for o in alone if not isinstance(o, AlertClock)]
    [dedup] = [d for d in alone if isinstance(d, Decision) and d.action == "dedup"]
    assert dedup.count == 1 and dedup.time == T0 + 60 * NS
    assert {(c.node, c.time) for c in of(mixed, AlertClock)} == {
        ("rec", T0),
        ("rec", T0 + NS),
        ("live", T0 + day),
        ("rec", T0 + 61 * NS),
    }
    assert of(mixed, AlertClock)[-1].id == f"clock:{SRC}:rec:{T0 + 61 * NS}"


def test_a_batch_without_clocks_moves_every_node() -> None:
    """From an older learner: its watermark is every node's (the nameless node's) clock."""
    state = State()
    run([on_node(exec_drift("/bin/sh", T0), "rec"), on_node(exec_drift("/bin/sh", T0 + NS, 1), "rec")], T0, state=state)
    out = run([], watermark=T0 + 60 * NS, state=state)
    assert [d.action for d in of(out, Decision)] == ["dedup"]
    assert of(out, AlertClock) == [AlertClock(id=f"clock:{SRC}:{T0 + 60 * NS}", time=T0 + 60 * NS, source=SRC)]


def test_a_snapshot_from_before_per_node_clocks_still_loads() -> None:
    state = State()
    run([exec_drift("/bin/sh", T0), exec_drift("/bin/sh", T0 + NS, 1)], T0 + NS, state=state)
    snap = msgspec.to_builtins(core.export(state))
    for window in snap["windows"]:
        del window["node"]
    del snap["nodes"], snap["node_clocks"]
    snap["clocks"] = {SRC: T0 + NS}
    old = core.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=core.Snapshot))
    assert old.nodes == {SRC: {"": T0 + NS}} and old.clocks == {SRC: {"": T0 + NS}}
    out = run([], watermark=T0 + 60 * NS, state=old)
    assert [(d.action, d.count) for d in of(out, Decision)] == [("dedup", 1)]
