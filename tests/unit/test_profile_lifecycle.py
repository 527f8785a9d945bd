"""Datadog's security-profile life-cycle tests (seed: datadog-cws-security-profile-sliding-window-pr),
re-written as event traces with event times and run through the pure learner + evictor.

Each test class of the seed is one trace; each of its sub-tests is a step, and
``test_<class>[<sub-test>]`` replays the trace up to that step and checks it.
Timings (event time): workload warm-up 5 s, minimum stable period 10 s,
unstable time threshold 60 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from contracts.profiles import BehaviourAdded, Drift, StateChanged, VersionEvicted
from services.profile_learner import core
from services.profile_learner.sim import connect_, dns_, exec_, ns, start, syscalls_, tick
from tests.sim import Sim

S = core.SECOND
Step = tuple[str, Callable[[Sim], Any], Callable[[Sim, Any], None]]


def cfg(**kw: Any) -> core.Config:
    return core.config(stable=10, warmup_period=5 * S, unstable_time=60 * S, **kw)


def run(steps: list[Step], name: str, sim: Sim) -> None:
    for step, act, check in steps:
        result = act(sim)
        if step == name:
            check(sim, result)
            return
    raise AssertionError(f"no step {name}")


def names(steps: list[Step]) -> list[str]:
    return [s[0] for s in steps]


def no_drift(_sim: Sim, drifts: list[Drift]) -> None:
    assert drifts == []


def added(sim: Sim, tag: str, behaviour: str) -> bool:
    return bool(sim.of_kind(BehaviourAdded, image_tag=tag, behaviour=behaviour))


def one_drift(reason: str, inserted: bool, state: str, stable_tag: str = "") -> Callable[[Sim, list[Drift]], None]:
    def check(_sim: Sim, drifts: list[Drift]) -> None:
        assert len(drifts) == 1, drifts
        d = drifts[0]
        assert (d.reason, d.inserted, d.version_state, d.stable_tag) == (reason, inserted, state, stable_tag)

    return check


# --- TestSecurityProfileLifeCycleExecs / LifeCycleDNS: same trace, two event types ---------------


def lifecycle_steps(kind: str, prefix: str = "life-cycle") -> list[Step]:
    """v1 learns, stabilises, drifts; v2 learns beside a stable v1; a v1 kept busy turns unstable."""

    def ev(t: float, tag: str, what: str, image: str = "app", cid: str = "c1") -> Any:
        if kind == "exec":
            return exec_(t, image, tag, f"/bin/{what}", cid=cid)
        return dns_(t, image, tag, f"{what}.example.com", cid=cid)

    def dns_key(what: str) -> str:
        return f"/bin/{what}" if kind == "exec" else f"{what}.example.com"

    def v1_learning(sim: Sim) -> list[Drift]:
        sim.feed(start(0, "app", "v1"), ev(1, "v1", "a"))  # warm-up: learned
        return sim.feed(ev(7, "v1", "b"))  # learning: learned, no drift

    def v1_learning_check(sim: Sim, drifts: list[Drift]) -> None:
        assert drifts == []
        assert sim.version("app", "v1").states[kind] == "learning"
        assert added(sim, "v1", dns_key("b"))

    def v1_stable(sim: Sim) -> list[Drift]:
        assert sim.feed(tick(18)) == []
        return sim.feed(ev(20, "v1", "c"))

    def v1_stable_check(sim: Sim, drifts: list[Drift]) -> None:
        one_drift("stable_version", False, "stable")(sim, drifts)
        assert sim.of_kind(StateChanged, image_tag="v1", event_type=kind, new_state="stable")[0].time == ns(17)
        assert not added(sim, "v1", dns_key("c"))

    def v2_new(sim: Sim) -> list[Drift]:
        sim.feed(start(21, "app", "v2", cid="c2"))
        return sim.feed(ev(27, "v2", "d", cid="c2"))

    def v2_new_check(sim: Sim, drifts: list[Drift]) -> None:
        one_drift("other_version_stable", True, "learning", "v1")(sim, drifts)
        assert added(sim, "v2", dns_key("d"))

    def v2_v1(sim: Sim) -> list[Drift]:
        # for DNS, matched on the last 3 labels: www.a.example.com is v1's a.example.com
        return sim.feed(ev(28, "v2", "a" if kind == "exec" else "www.a", cid="c2"))

    def v2_v1_check(sim: Sim, drifts: list[Drift]) -> None:
        assert drifts == []
        assert added(sim, "v2", dns_key("a"))  # new for v2, learned from v1's knowledge

    def unstable(sim: Sim) -> list[Drift]:
        # Another image whose v1 keeps learning something new every 8 s: unstable at 60 s.
        sim.feed(start(0, "busy", "v1", cid="b1"))
        for i, t in enumerate(range(6, 60, 8)):
            assert sim.feed(ev(t, "v1", f"n{i}", image="busy", cid="b1")) == []
        return sim.feed(ev(61, "v1", "late", image="busy", cid="b1"))

    def unstable_check(sim: Sim, drifts: list[Drift]) -> None:
        assert drifts == []
        changed = sim.of_kind(StateChanged, image_name="busy", event_type=kind, new_state="unstable")
        assert [(c.time, c.reason) for c in changed] == [(ns(60), "time_threshold")]
        assert not sim.of_kind(BehaviourAdded, image_name="busy", behaviour=dns_key("late"))
        # nothing of this type drifts while a version is unstable, even beside a learning v2
        sim.feed(start(62, "busy", "v2", cid="b2"))
        assert sim.feed(ev(70, "v2", "other", image="busy", cid="b2")) == []

    what = "process" if kind == "exec" else "dns"
    return [
        (f"{prefix}-v1-learning-new-{what}", v1_learning, v1_learning_check),
        (f"{prefix}-v1-stable-{what}-anomaly", v1_stable, v1_stable_check),
        (f"{prefix}-v2-learning-new-{what}-anomaly", v2_new, v2_new_check),
        (f"{prefix}-v2-learning-v1-{what}", v2_v1, v2_v1_check),
        (f"{prefix}-v1-unstable-new-{what}", unstable, unstable_check),
    ]


EXECS = lifecycle_steps("exec")
DNS = lifecycle_steps("dns")


@pytest.mark.parametrize("step", names(EXECS))
def test_TestSecurityProfileLifeCycleExecs(step: str) -> None:
    run(EXECS, step, Sim(cfg()))


@pytest.mark.parametrize("step", names(DNS))
def test_TestSecurityProfileLifeCycleDNS(step: str) -> None:
    run(DNS, step, Sim(cfg()))


# --- eviction (max_image_tags = 2) -------------------------------------------------------------


def eviction_steps(kind: str) -> list[Step]:
    prefix = f"life-cycle-eviction-{'process' if kind == 'exec' else 'dns'}"

    def ev(t: float, tag: str, what: str, cid: str) -> Any:
        if kind == "exec":
            return exec_(t, "app", tag, f"/bin/{what}", cid=cid)
        return dns_(t, "app", tag, f"{what}.example.com", cid=cid)

    def v1_learning(sim: Sim) -> list[Drift]:
        sim.feed(start(0, "app", "v1"))
        return sim.feed(ev(7, "v1", "b", "c1"))

    def v1_stable(sim: Sim) -> list[Drift]:
        return sim.feed(ev(20, "v1", "c", "c1"))  # stable at 17, no tick needed: the event advances time

    def v2_new(sim: Sim) -> list[Drift]:
        sim.feed(start(21, "app", "v2", cid="c2"))
        return sim.feed(ev(27, "v2", "d", "c2"))

    def v3_evicts_v1(sim: Sim) -> list[Drift]:
        return sim.feed(start(40, "app", "v3", cid="c3"))

    def v3_evicts_v1_check(sim: Sim, drifts: list[Drift]) -> None:
        assert drifts == []
        assert [(e.image_tag, e.last_seen) for e in sim.of_kind(VersionEvicted)] == [("v1", ns(20))]
        assert sim.tags("app") == ["v2", "v3"]
        assert sim.version("app", "v2").states[kind] == "stable"

    def v1_behaviour(sim: Sim) -> list[Drift]:
        return sim.feed(ev(47, "v3", "b", "c3"))  # known only by the evicted v1

    return [
        (f"{prefix}-v1-learning-new-process", v1_learning, no_drift),
        (f"{prefix}-v1-stable-process-anomaly", v1_stable, one_drift("stable_version", False, "stable")),
        (
            f"{prefix}-v2-learning-new-process-anomaly",
            v2_new,
            one_drift("other_version_stable", True, "learning", "v1"),
        ),
        (f"{prefix}-check-v1-evicted", v3_evicts_v1, v3_evicts_v1_check),
        (f"{prefix}-v1-process-anomaly", v1_behaviour, one_drift("other_version_stable", True, "learning", "v2")),
    ]


EVICT_PROCESS = eviction_steps("exec")
EVICT_DNS = eviction_steps("dns")


@pytest.mark.parametrize("step", names(EVICT_PROCESS))
def test_TestSecurityProfileLifeCycleEvictitonProcess(step: str) -> None:
    run(EVICT_PROCESS, step, Sim(cfg(), max_image_tags=2))


@pytest.mark.parametrize("step", names(EVICT_DNS))
def test_TestSecurityProfileLifeCycleEvictitonDNS(step: str) -> None:
    run(EVICT_DNS, step, Sim(cfg(), max_image_tags=2))


def _unstable_steps() -> list[Step]:
    prefix = "life-cycle-eviction-process-unstable"

    def v1_learning(sim: Sim) -> list[Drift]:
        sim.feed(start(0, "app", "v1"))
        return sim.feed(exec_(7, "app", "v1", "/bin/b"))

    def v1_unstable(sim: Sim) -> list[Drift]:
        for i, t in enumerate(range(14, 60, 8)):
            assert sim.feed(exec_(t, "app", "v1", f"/bin/n{i}")) == []
        return sim.feed(exec_(62, "app", "v1", "/bin/late"))

    def v1_unstable_check(sim: Sim, drifts: list[Drift]) -> None:
        assert drifts == []
        assert sim.version("app", "v1").states["exec"] == "unstable"
        assert not added(sim, "v1", "/bin/late")

    def v2_learning(sim: Sim) -> list[Drift]:
        sim.feed(start(63, "app", "v2", cid="c2"))
        return sim.feed(exec_(70, "app", "v2", "/bin/v2-new", cid="c2"))

    def v2_learning_check(sim: Sim, drifts: list[Drift]) -> None:
        assert drifts == []
        assert added(sim, "v2", "/bin/v2-new")

    def v3_learning(sim: Sim) -> list[Drift]:
        sim.feed(start(72, "app", "v3", cid="c3"))
        return sim.feed(exec_(78, "app", "v3", "/bin/v3-new", cid="c3"))

    def v3_learning_check(sim: Sim, drifts: list[Drift]) -> None:
        assert drifts == []  # v2 is still learning (stable at 80)
        assert [e.image_tag for e in sim.of_kind(VersionEvicted)] == ["v1"]
        assert sim.tags("app") == ["v2", "v3"]

    def v3_anomaly(sim: Sim) -> list[Drift]:
        return sim.feed(exec_(85, "app", "v3", "/bin/v3-other", cid="c3"))

    return [
        (f"{prefix}-v1-learning-new-process", v1_learning, no_drift),
        (f"{prefix}-v1-unstable", v1_unstable, v1_unstable_check),
        (f"{prefix}-v2-learning", v2_learning, v2_learning_check),
        (f"{prefix}-v3-learning", v3_learning, v3_learning_check),
        # the unstable v1 is gone, v2 became stable at 80: detection is back
        (f"{prefix}-v3-process-anomaly", v3_anomaly, one_drift("other_version_stable", True, "learning", "v2")),
    ]


EVICT_UNSTABLE = _unstable_steps()


@pytest.mark.parametrize("step", names(EVICT_UNSTABLE))
def test_TestSecurityProfileLifeCycleEvictitonProcessUnstable(step: str) -> None:
    run(EVICT_UNSTABLE, step, Sim(cfg(), max_image_tags=2))


# --- syscalls life-cycle ------------------------------------------------------------------------


def _syscall_steps() -> list[Step]:
    def learning(sim: Sim) -> list[Drift]:
        sim.feed(start(0, "app", "v1"))
        return sim.feed(syscalls_(7, "app", "v1", ["read", "write"]))

    def learning_check(sim: Sim, drifts: list[Drift]) -> None:
        assert drifts == []
        assert added(sim, "v1", "read") and added(sim, "v1", "write")

    def stable_known(sim: Sim) -> list[Drift]:
        return sim.feed(syscalls_(20, "app", "v1", ["read"]))

    def stable_known_check(sim: Sim, drifts: list[Drift]) -> None:
        assert drifts == []
        assert sim.version("app", "v1").states["syscalls"] == "stable"

    def stable_new(sim: Sim) -> list[Drift]:
        return sim.feed(syscalls_(21, "app", "v1", ["read", "ptrace"]))

    def stable_new_check(sim: Sim, drifts: list[Drift]) -> None:
        one_drift("stable_version", False, "stable")(sim, drifts)
        assert drifts[0].behaviour == "ptrace"

    def v2(sim: Sim) -> list[Drift]:
        sim.feed(start(22, "app", "v2", cid="c2"))
        return sim.feed(syscalls_(28, "app", "v2", ["write", "mount"], cid="c2"))

    def v2_check(sim: Sim, drifts: list[Drift]) -> None:
        one_drift("other_version_stable", True, "learning", "v1")(sim, drifts)
        assert drifts[0].behaviour == "mount"  # "write" is known by v1

    def unstable(sim: Sim) -> list[Drift]:
        # size threshold 4 per (version, type): v2 already holds write + mount
        return sim.feed(syscalls_(29, "app", "v2", ["openat", "close", "socket"], cid="c2"))

    def unstable_check(sim: Sim, drifts: list[Drift]) -> None:
        assert len(drifts) == 2  # openat, close drift while inserted; socket hits the size threshold
        v2 = sim.version("app", "v2")
        assert v2.states["syscalls"] == "unstable" and v2.sizes["syscalls"] == 4
        assert sim.of_kind(StateChanged, image_tag="v2", new_state="unstable")[0].reason == "size_threshold"
        assert sim.feed(syscalls_(40, "app", "v1", ["kexec_load"])) == []  # v1 stable, but v2 unstable

    return [
        ("syscalls-v1-learning", learning, learning_check),
        ("syscalls-v1-stable-no-anomaly", stable_known, stable_known_check),
        ("syscalls-v1-stable-anomaly", stable_new, stable_new_check),
        ("syscalls-v2-learning-beside-stable-v1", v2, v2_check),
        ("syscalls-v2-unstable", unstable, unstable_check),
    ]


SYSCALLS = _syscall_steps()


@pytest.mark.parametrize("step", names(SYSCALLS))
def test_syscall_lifecycle(step: str) -> None:
    run(SYSCALLS, step, Sim(cfg(size_threshold=4)))


def test_open_and_connect_keys_are_generalised() -> None:
    sim = Sim(cfg())
    sim.feed(start(0, "app", "v1"))
    from services.profile_learner.sim import open_

    sim.feed(open_(1, "app", "v1", "/proc/4242/status"), open_(2, "app", "v1", "/proc/77/status"))
    sim.feed(connect_(3, "app", "v1", "10.1.2.3", 443), connect_(4, "app", "v1", "10.9.9.9", 443))
    opens = sim.of_kind(BehaviourAdded, event_type="open")
    assert [(b.behaviour, b.access, b.executable) for b in opens] == [("/proc/*/status", "r", "/bin/app")]
    conns = sim.of_kind(BehaviourAdded, event_type="connect")
    assert [b.behaviour for b in conns] == ["tcp:10.0.0.0/8:443"]
