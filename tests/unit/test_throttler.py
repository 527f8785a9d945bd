"""throttler core: KubeArmor's per-container throttling on event time, one clock per node."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from contracts.alerts import Alert, AlertClock, AlertThreshold
from contracts.decisions import Decision
from contracts.events import Container, ExecObserved, Process
from services.runtime.settings import SettingsError, load_settings
from services.throttler import core
from services.throttler.app import config_from
from services.throttler.core import NS, Config, State

T0 = 1_700_000_000 * NS
MS = NS // 1000
WEB = Container(
    id="c1",
    image_name="wordpress",
    image_tag="4.8",
    pod="wordpress-586468bf4f-8bf6x",
    namespace="wordpress-mysql",
    name="wordpress",
)
DB = Container(id="c2", image_name="mysql", image_tag="8", pod="mysql-0", namespace="wordpress-mysql", name="mysql")
KUBEARMOR = Config(max_per_sec=2, throttle_sec=60)


def alert(
    t: int, n: int, container: Container = WEB, rule: str = "anomaly_detection", node: str | None = None
) -> Alert:
    """An alert; with ``node``, it carries its raw event and so belongs to that node's clock."""
    event = None if node is None else ExecObserved(time=t, node=node, container=container, process=Process(pid=n))
    return Alert(
        id=f"a{container.id}-{n}",
        time=t,
        rule_id=rule,
        event_type="exec",
        container=container,
        behaviour=f"/x/{n}",
        event=event,
    )


def clock(t: int, source: str = "vigil.drift.0", node: str = "") -> AlertClock:
    return AlertClock(id=f"clock:{source}:{node}:{t}", time=t, source=source, node=node)


def feed(state: State, config: Config, messages: list) -> list[core.Output]:
    return [o for m in messages for o in core.handle(state, config, m)]


def kinds(outputs: list[core.Output]) -> list[str]:
    return [type(o).__name__ for o in outputs]


def test_kubearmor_scenario_threshold_then_silence_until_window_end_then_alerts_again() -> None:
    state = State()
    burst = [alert(T0 + i * 10 * MS, i) for i in range(5)]  # 5 alerts in 50 ms, max 2/s
    out = feed(state, KUBEARMOR, burst)
    assert out[:2] == burst[:2]
    threshold = out[2]
    assert isinstance(threshold, AlertThreshold) and len(out) == 3
    assert (threshold.Type, threshold.Operation, threshold.MaxAlertsPerSec, threshold.DroppingAlertsInterval) == (
        "SystemEvent",
        "AlertThreshold",
        2,
        60,
    )
    assert threshold.container == WEB and threshold.time == T0 + 20 * MS and threshold.id == "threshold:ac1-2"
    # one alert per second for the whole minute: all dropped, clock ticks close nothing early
    during = [m for s in range(1, 60) for m in (alert(T0 + s * NS, 100 + s), clock(T0 + s * NS))]
    assert feed(state, KUBEARMOR, during) == []
    end = T0 + 60 * NS  # measured from the first alert of the window that overflowed (KubeArmor)
    closing = feed(state, KUBEARMOR, [clock(end)])
    (decision,) = closing
    assert isinstance(decision, Decision)
    assert (decision.action, decision.source, decision.count, decision.time, decision.container_id, decision.pod) == (
        "throttle",
        "throttle",
        3 + 59,
        end,
        "c1",
        "wordpress-586468bf4f-8bf6x",
    )
    assert decision.details["threshold_id"] == threshold.id
    after = [alert(end + NS, 200), alert(end + NS + 1, 201)]
    assert feed(state, KUBEARMOR, after) == after


def test_other_containers_are_unaffected() -> None:
    state = State()
    out = feed(state, KUBEARMOR, [alert(T0 + i, i) for i in range(3)] + [alert(T0 + 10 + i, i, DB) for i in range(2)])
    assert kinds(out) == ["Alert", "Alert", "AlertThreshold", "Alert", "Alert"]
    assert [o.container.id for o in out[3:]] == ["c2", "c2"]  # type: ignore[union-attr]


def test_rate_window_boundary_exactly_one_second_opens_a_new_window() -> None:
    state = State()
    out = feed(state, KUBEARMOR, [alert(T0, 0), alert(T0 + NS - 1, 1), alert(T0 + NS, 2), alert(T0 + NS + 1, 3)])
    assert kinds(out) == ["Alert"] * 4
    assert kinds(feed(state, KUBEARMOR, [alert(T0 + NS + 2, 4)])) == ["AlertThreshold"]


def test_throttle_boundary_an_alert_exactly_at_the_end_passes_and_carries_the_decision_first() -> None:
    state = State()
    feed(state, KUBEARMOR, [alert(T0, 0), alert(T0, 1), alert(T0, 2)])
    end = T0 + 60 * NS
    assert feed(state, KUBEARMOR, [alert(end - 1, 3)]) == []
    last = alert(end, 4)
    out = feed(state, KUBEARMOR, [last])
    assert kinds(out) == ["Decision", "Alert"] and out[1] == last
    assert out[0].count == 2 and out[0].time == end  # type: ignore[union-attr]
    assert feed(state, KUBEARMOR, [clock(end + 3600 * NS)]) == []  # closed once, never twice


def test_the_clock_is_the_lowest_partition_watermark() -> None:
    state = State()
    feed(state, KUBEARMOR, [clock(T0, "p0"), clock(T0, "p1"), alert(T0, 0), alert(T0, 1), alert(T0, 2)])
    assert feed(state, KUBEARMOR, [clock(T0 + 61 * NS, "p0")]) == []  # p1 still at T0
    assert kinds(feed(state, KUBEARMOR, [clock(T0 + 60 * NS, "p1")])) == ["Decision"]


def test_idle_buckets_are_forgotten_once_the_clock_passes_their_window() -> None:
    state = State()
    feed(state, KUBEARMOR, [alert(T0, 0), alert(T0, 0, DB)])
    assert len(state.buckets) == 2
    feed(state, KUBEARMOR, [clock(T0 + NS)])
    assert state.buckets == {}


def test_throttling_disabled_passes_everything_and_keeps_no_state() -> None:
    state = State()
    burst = [alert(T0, i) for i in range(50)]
    assert feed(state, Config(enabled=False), burst) == burst and state.buckets == {}


def test_per_rule_budget_throttles_that_rule_only() -> None:
    state = State()
    cfg = Config(max_per_sec=2, throttle_sec=30, rule_budgets={"noisy": 1})
    out = feed(state, cfg, [alert(T0, 0, rule="noisy"), alert(T0, 1, rule="noisy"), alert(T0, 2), alert(T0, 3)])
    assert kinds(out) == ["Alert", "AlertThreshold", "Alert", "Alert"]
    threshold = out[1]
    assert isinstance(threshold, AlertThreshold) and (threshold.rule_id, threshold.MaxAlertsPerSec) == ("noisy", 1)
    (decision,) = feed(state, cfg, [clock(T0 + 30 * NS)])
    assert (decision.rule, decision.count, decision.details["max_alerts_per_sec"]) == ("noisy", 1, 1)  # type: ignore[union-attr]


def test_replaying_the_same_input_gives_the_same_outputs() -> None:
    inputs = [
        m
        for s in range(120)
        for m in (alert(T0 + s * 300 * MS, s), alert(T0 + s * 300 * MS, s, DB), clock(T0 + s * 300 * MS))
    ]

    def replay() -> list[core.Output]:
        return feed(State(), Config(max_per_sec=3, throttle_sec=5), inputs)

    first = replay()
    assert first == replay()
    assert sum(isinstance(o, Decision) for o in first) > 0


def test_a_restored_snapshot_continues_exactly_like_the_original() -> None:
    cfg = Config(max_per_sec=3, throttle_sec=5)
    inputs = [
        m
        for s in range(120)
        for m in (alert(T0 + s * 300 * MS, s), alert(T0 + s * 300 * MS, s, DB), clock(T0 + s * 300 * MS))
    ]
    live = State()
    feed(live, cfg, inputs[:100])
    assert any(b.throttled_at is not None for b in live.buckets.values())
    data = msgspec.msgpack.encode(core.export(live))
    restored = core.restore(msgspec.msgpack.decode(data, type=core.Snapshot))
    assert feed(restored, cfg, inputs[100:]) == feed(live, cfg, inputs[100:])


def test_settings_map_to_the_core_config_and_a_bad_budget_names_its_key() -> None:
    env = {"VIGIL_ALERT_THROTTLING": "false", "VIGIL_MAX_ALERT_PER_SEC": "2", "VIGIL_THROTTLE_SEC": "60"}
    cfg = config_from(load_settings(env={**env, "VIGIL_MAX_ALERT_PER_SEC_PER_RULE": "{noisy: 1}"}))
    sources = tuple(f"vigil.drift.{p}" for p in range(4))  # every partition holds the clock back
    assert cfg == Config(enabled=False, max_per_sec=2, throttle_sec=60, rule_budgets={"noisy": 1}, sources=sources)
    with pytest.raises(SettingsError, match="max_alert_per_sec_per_rule.noisy"):
        load_settings(env={"VIGIL_MAX_ALERT_PER_SEC_PER_RULE": "{noisy: 0}"})


@hsettings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 700 * MS)), min_size=1, max_size=120),
    max_per_sec=st.integers(1, 4),
    throttle_sec=st.integers(1, 5),
)
def test_every_alert_is_passed_or_counted_in_a_throttle_decision(gaps, max_per_sec, throttle_sec) -> None:
    """Conservation: nothing is silently lost, whatever the timing; one decision per threshold."""
    cfg = Config(max_per_sec=max_per_sec, throttle_sec=throttle_sec)
    pods = [WEB, DB, Container(id="c3", image_name="redis")]
    state, t, out = State(), T0, []
    for n, (who, gap) in enumerate(gaps):
        t += gap
        out += core.handle(state, cfg, alert(t, n, pods[who]))
        if n % 7 == 0:
            out += core.handle(state, cfg, clock(t))
    out += core.handle(state, cfg, clock(t + 3600 * NS))
    passed = [o for o in out if isinstance(o, Alert)]
    thresholds = [o for o in out if isinstance(o, AlertThreshold)]
    decisions = [o for o in out if isinstance(o, Decision)]
    assert len(passed) + sum(d.count for d in decisions) == len(gaps)
    assert sorted(d.details["threshold_id"] for d in decisions) == sorted(a.id for a in thresholds)
    assert state.buckets == {}


def test_a_partition_that_has_not_reported_yet_holds_the_clock_back() -> None:
    """Partitions are processed in parallel: another partition's clock running far ahead
    before WEB's partition reported must not close WEB's throttle window early. The outcome
    is the same whichever partition's messages come first."""
    config = Config(max_per_sec=2, throttle_sec=30, sources=("vigil.drift.0", "vigil.drift.1"))
    web = [clock(T0, "vigil.drift.0"), *[alert(T0 + i * MS, i) for i in range(5)]]
    web += [clock(T0 + 10 * NS, "vigil.drift.0"), alert(T0 + 20 * NS, 9), clock(T0 + 100 * NS, "vigil.drift.0")]
    other = [clock(T0 + 200 * NS, "vigil.drift.1")]
    ahead, behind = feed(State(), config, other + web), feed(State(), config, web + other)
    assert ahead == behind
    [decision] = [o for o in ahead if isinstance(o, Decision)]
    assert decision.count == 4  # 3 of the burst + the alert at 20 s, inside the window
    assert feed(State(), Config(max_per_sec=2, throttle_sec=30), other + web) != behind  # "sources seen" would differ


# --- KubeArmor's own rule, case by case --------------------------------------------------------
# Facts from KubeArmor/feeder/feeder.go ShouldDropAlertsPerContainer and its kernel twin
# should_drop_alerts_per_container in KubeArmor/BPF/shared.h (kubearmor/KubeArmor @ 510cee310a16):
# the first alert of a container opens a window (FirstEventTimestamp); an alert 1 s or more after it
# opens a new one; the alert that takes the count past maxAlertPerSec becomes the AlertThreshold and
# the container is throttled while now - FirstEventTimestamp < throttleSec; once that is over, the
# next alert opens a fresh window with count 1. Times below are ms after the first alert.
KUBEARMOR_CASES = [
    ("the first alert passes", 2, 60, [0], "p"),
    ("max per second pass, the next becomes the threshold", 2, 60, [0, 100, 200], "ppt"),
    ("an alert 1 s after the window's first opens a new window", 2, 60, [0, 100, 1000, 1100, 1200], "ppppt"),
    (
        "throttled until first + throttleSec: 59.999 s dropped, 60.0 s passes",
        2,
        60,
        [0, 100, 200, 59_999, 60_000],
        "pptdp",
    ),
    ("a late excess does not push the end: window at 0, excess at 0.9 s", 2, 60, [0, 500, 900, 60_000], "pptp"),
    ("after the throttle the count starts afresh", 2, 60, [0, 100, 200, 60_000, 60_100, 60_200], "ppt" + "ppt"),
    ("one alert a second never throttles", 1, 30, [0, 1000, 2000, 3000], "pppp"),
    ("the throttle interval is the configured one", 1, 5, [0, 10, 4_999, 5_000], "ptdp"),
]


@pytest.mark.parametrize(
    ("max_per_sec", "throttle_sec", "times_ms", "verdicts"),
    [case[1:] for case in KUBEARMOR_CASES],
    ids=[case[0] for case in KUBEARMOR_CASES],
)
def test_kubearmor_should_drop_alerts_per_container(
    max_per_sec: int, throttle_sec: int, times_ms: list[int], verdicts: str
) -> None:
    config, state, got = Config(max_per_sec=max_per_sec, throttle_sec=throttle_sec), State(), []
    for n, ms in enumerate(times_ms):
        out = [o for o in core.handle(state, config, alert(T0 + ms * MS, n)) if not isinstance(o, Decision)]
        got.append("d" if not out else "t" if isinstance(out[0], AlertThreshold) else "p")
    assert "".join(got) == verdicts


def test_the_dropped_count_still_counts_every_alert_of_the_kubearmor_window() -> None:
    """KubeArmor only drops; Vigil keeps counting: the excess alert and everything up to
    FirstEventTimestamp + throttleSec, decided when the window ends."""
    state = State()
    feed(state, KUBEARMOR, [alert(T0 + ms * MS, n) for n, ms in enumerate([0, 500, 900, 30_000, 59_999])])
    (decision,) = feed(state, KUBEARMOR, [clock(T0 + 60 * NS)])
    assert (decision.count, decision.time) == (3, T0 + 60 * NS)  # type: ignore[union-attr]
    assert (decision.details["window_start"], decision.details["window_end"]) == (T0, T0 + 60 * NS)  # type: ignore[index]


# --- one clock per node ----------------------------------------------------------------------------


def test_a_live_node_clock_never_closes_a_replayed_trace_container() -> None:
    """A trace recorded on node "rec" replayed into a Vigil whose live collector ("live")
    ticks on today's wall clock: the live clock passes the trace's window a day early, and
    only the trace's own clock closes it, with the same outputs as without the live node."""
    sources = ("vigil.drift.0", "vigil.drift.1")
    config = Config(max_per_sec=2, throttle_sec=60, sources=sources)
    day = 86_400 * NS
    live = [clock(T0 + day + s * NS, src, "live") for s in range(3) for src in sources]
    trace = [alert(T0 + i * MS, i, node="rec") for i in range(4)]
    trace += [clock(T0 + 30 * NS, src, "rec") for src in sources] + [alert(T0 + 40 * NS, 9, node="rec")]
    trace += [clock(T0 + 61 * NS, src, "rec") for src in sources]
    alone = feed(State(), config, trace)
    mixed = feed(State(), config, live[:2] + trace[:5] + live[2:] + trace[5:])
    assert mixed == alone
    [decision] = [o for o in alone if isinstance(o, Decision)]
    assert (decision.count, decision.time) == (3, T0 + 60 * NS)  # the excess, the 4th and the one at 40 s


def test_a_node_clock_is_its_lowest_over_partitions_and_the_empty_node_moves_every_node() -> None:
    sources = ("vigil.drift.0", "vigil.drift.1")
    config = Config(max_per_sec=1, throttle_sec=10, sources=sources)
    state = State()
    feed(state, config, [alert(T0, 0, node="n1"), alert(T0, 1, node="n1")])
    assert feed(state, config, [clock(T0 + 20 * NS, "vigil.drift.0", "n1")]) == []  # drift.1 not there yet
    assert feed(state, config, [clock(T0 + 20 * NS, "vigil.drift.1", "n2")]) == []  # another node's
    assert kinds(feed(state, config, [clock(T0 + 20 * NS, "vigil.drift.1")])) == ["Decision"]  # nameless: everyone's


def test_buckets_of_alerts_without_a_node_follow_the_highest_node_of_each_partition() -> None:
    """Alerts whose event names no node (and every bucket from before per-node clocks) keep the
    single clock of before: per partition the highest node clock, then the lowest partition."""
    sources = ("vigil.drift.0", "vigil.drift.1")
    config = Config(max_per_sec=1, throttle_sec=10, sources=sources)
    state = State()
    feed(state, config, [alert(T0, 0), alert(T0, 1)])
    feed(state, config, [clock(T0 + 20 * NS, "vigil.drift.0", "a"), clock(T0 + 5 * NS, "vigil.drift.1", "a")])
    assert kinds(feed(state, config, [clock(T0 + 10 * NS, "vigil.drift.1", "b")])) == ["Decision"]


def test_a_snapshot_from_before_per_node_clocks_loads_as_the_empty_nodes_clock() -> None:
    bucket = {"container": WEB, "start": T0, "count": 3, "throttled_at": T0, "threshold_id": "t", "dropped": 1}
    data = msgspec.msgpack.encode(
        {"buckets": [("c1", "", bucket)], "clocks": {"vigil.drift.0": T0 + NS}, "now": T0 + NS}
    )
    state = core.restore(msgspec.msgpack.decode(data, type=core.Snapshot))
    assert state.clocks == {"vigil.drift.0": {"": T0 + NS}} and state.now == {"": T0 + NS}
    (decision,) = feed(state, KUBEARMOR, [clock(T0 + 60 * NS)])
    assert decision.count == 1  # type: ignore[union-attr]
