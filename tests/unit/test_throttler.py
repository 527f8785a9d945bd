"""throttler core: KubeArmor's per-container throttling on event time."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from contracts.alerts import Alert, AlertClock, AlertThreshold
from contracts.decisions import Decision
from contracts.events import Container
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


def alert(t: int, n: int, container: Container = WEB, rule: str = "anomaly_detection") -> Alert:
    return Alert(
        id=f"a{container.id}-{n}", time=t, rule_id=rule, event_type="exec", container=container, behaviour=f"/x/{n}"
    )


def clock(t: int, source: str = "vigil.drift.0") -> AlertClock:
    return AlertClock(id=f"clock:{source}:{t}", time=t, source=source)


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
    end = T0 + 20 * MS + 60 * NS
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
