"""Readiness verdicts (services/profile_learner/readiness.py): one test per reason,
on versions the learner's core really produced (the Sim) where the state matters."""

from __future__ import annotations

from typing import Any

from contracts.events import ContainerStarted, EventsLost
from contracts.profiles import SetState
from services.profile_learner import core
from services.profile_learner.readiness import verdict
from services.profile_learner.sim import _ctr, exec_, ns, start, tick
from services.runtime.settings import Duration, Readiness
from tests.sim import Sim

POLICY = Readiness()
HOUR = 3600 * core.SECOND


def ready_version(**over: Any) -> dict[str, Any]:
    v: dict[str, Any] = {
        "image_tag": "1.0",
        "states": {"syscalls": "stable", "exec": "stable", "open": "stable", "connect": "stable", "dns": "stable"},
        "last_new": {"syscalls": 0, "exec": 0},
        "starts": 2,
        "replicas": 2,
        "drifts": {},
        "last_drift": {},
        "lost": {},
    }
    v.update(over)
    return v


def failed(v: dict[str, Any], generator: str = "seccomp", now: int = 10 * HOUR, policy: Readiness = POLICY) -> set[str]:
    result = verdict("app", v, now, generator, policy)
    assert result.ready == (not result.failed())
    return {c.name for c in result.failed()}


def test_a_settled_version_is_ready() -> None:
    assert failed(ready_version()) == set()


def test_learning_or_unstable_types_are_not_ready_for_the_generator_using_them() -> None:
    learning = ready_version(states={**ready_version()["states"], "syscalls": "learning"})
    assert failed(learning, "seccomp") == {"stable"}
    assert failed(learning, "apparmor") == set()  # apparmor does not use syscalls
    assert failed(ready_version(states={**ready_version()["states"], "dns": "unstable"}), "networkpolicy") == {"stable"}


def test_quiet_period_counts_from_the_last_new_behaviour() -> None:
    strict = Readiness(min_quiet=Duration(2 * 3600))
    recent = ready_version(last_new={"syscalls": 9 * HOUR})
    assert failed(recent, policy=strict) == {"quiet"}
    assert failed(recent) == set()  # default: the stable state alone decides


def test_no_container_start_seen_means_start_up_syscalls_were_never_seen() -> None:
    assert failed(ready_version(starts=0)) == {"starts"}
    assert failed(ready_version(replicas=1), policy=Readiness(min_replicas=3)) == {"replicas"}


def test_recent_drift_blocks_old_drift_does_not() -> None:
    assert failed(ready_version(drifts={"syscalls": 2}, last_drift={"syscalls": 9 * HOUR + 1})) == {"drift"}
    assert failed(ready_version(drifts={"syscalls": 2}, last_drift={"syscalls": 8 * HOUR})) == set()
    assert failed(ready_version(drifts={"exec": 1}, last_drift={"exec": 10 * HOUR}), "seccomp") == set()


def test_kernel_side_loss_blocks_the_generator_it_hurts() -> None:
    lost_syscalls = ready_version(lost={"syscalls": 3})
    assert failed(lost_syscalls, "seccomp") == {"loss"}
    assert failed(lost_syscalls, "apparmor") == set()
    assert failed(ready_version(lost={"records": 1}), "apparmor") == {"loss"}


def test_the_learner_counts_starts_replicas_drift_and_loss_on_event_time() -> None:
    sim = Sim(core.config(stable=10, warmup_period=core.SECOND, unstable_time=HOUR))
    sim.feed(start(0, "app", "1.0", cid="c1"), exec_(0.5, "app", "1.0", "/bin/a", cid="c1"))
    sim.feed(exec_(0.6, "app", "1.0", "/bin/a", cid="c2"), tick(20))
    v = sim.version("app", "1.0")
    assert v is not None and (v.starts, len(v.replicas)) == (1, 2) and v.states["exec"] == "stable"
    sim.feed(exec_(21, "app", "1.0", "/bin/new", cid="c1"))  # drift: stable, not in warm-up
    lost = EventsLost(time=ns(22), node="n", container=_ctr("app", "1.0", "c1"), syscalls=4)
    sim.feed(lost, ContainerStarted(time=ns(23), node="n", container=_ctr("app", "1.0", "c3")))
    assert (v.drifts, v.last_drift, v.lost, v.last_lost, v.starts) == (
        {"exec": 1},
        {"exec": ns(21)},
        {"syscalls": 4},
        ns(22),
        2,
    )
    [summary] = core.summary(sim.state.profiles["app"])["versions"]
    assert (summary["starts"], summary["replicas"], summary["drifts"], summary["lost"]) == (
        2,
        3,
        {"exec": 1},
        {"syscalls": 4},
    )
    # ... which is what the verdict reads
    assert {c.name for c in verdict("app", summary, ns(23), "seccomp", POLICY).failed()} == {"loss"}


def test_an_operator_forcing_stable_makes_the_state_check_pass() -> None:
    sim = Sim(core.config(stable=3600))
    sim.feed(start(0, "app", "1.0"), exec_(1, "app", "1.0", "/bin/a"), tick(200))
    sim.command(SetState(id="op", image_name="app", image_tag="1.0", state="stable"))
    v = sim.version("app", "1.0")
    assert v is not None and v.states["syscalls"] == "stable"
