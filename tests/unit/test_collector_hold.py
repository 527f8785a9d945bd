"""The identity hold (collector/hold.py): events of an unnamed container wait for
its workload, leave in order and named, or are dropped and counted per cause."""

from __future__ import annotations

from collector.hold import Hold
from collector.runtimes import HOLD_OVERFLOW, NOT_FOUND
from collector.workloads import Registry
from contracts import workloads as wl
from contracts.events import ClockTicked, Container, FileAccess, FileOpened, Process, RawEvent
from contracts.workloads import Workload

S = 1_000_000_000
A, B = "a" * 64, "b" * 64


def opened(cid: str, path: str, image: str = "", cg: int = 7) -> FileOpened:
    c = Container(id=cid, image_name=image, cgroup_id=cg)
    return FileOpened(time=1, node="n", container=c, process=Process(pid=1), file=FileAccess(path=path))


def paths(events: list[RawEvent]) -> list[str]:
    return [e.file.path for e in events]  # type: ignore[attr-defined]


def test_resolved_late_leaves_in_order_and_named() -> None:
    hold = Hold(max_age_ns=5 * S, max_events=100)
    out, new = hold.admit([opened(A, "/1"), ClockTicked(time=1), opened(A, "/2")], now=0)
    assert [type(e) for e in out] == [ClockTicked] and new == [A]
    assert hold.release(lambda cid: None, now=1 * S) == ([], [])  # not named yet: still held
    out, new = hold.admit([opened(A, "/3")], now=2 * S)
    assert out == [] and new == []  # queued behind the held ones
    reg = Registry()
    reg.apply(wl.key(A), wl.encode(Workload(container_id=A, image_name="nginx", image_tag="1.25", pod="web-0")))
    out, ended = hold.release(reg.get, now=3 * S)
    assert paths(out) == ["/1", "/2", "/3"] and ended == []
    assert {(e.container.image_name, e.container.image_tag, e.container.pod, e.container.cgroup_id) for e in out} == {  # type: ignore[attr-defined]
        ("nginx", "1.25", "web-0", 7)
    }
    assert hold.count == 0 and hold.released == 3 and not hold.dropped


def test_never_resolved_is_dropped_after_the_hold_and_counted_with_its_cause() -> None:
    hold = Hold(max_age_ns=5 * S, max_events=100)
    hold.admit([opened(A, "/1"), opened(A, "/2"), opened(B, "/x", cg=9)], now=0)
    assert hold.release(lambda cid: None, now=4 * S) == ([], [])
    out, ended = hold.release(lambda cid: None, now=5 * S, timeout_cause=lambda cid: "no_runtime_source")
    assert out == [] and sorted(ended) == [A, B]
    assert hold.dropped == {"no_runtime_source": 3} and hold.containers == {"no_runtime_source": 2}
    assert list(hold.samples["no_runtime_source"]) == [A, B]
    assert hold.dropped_cgroups == {7: A, 9: B}  # their dedup entries are forgotten once they are named
    assert hold.count == 0 and not hold.held


def test_a_final_answer_ends_the_wait_at_once() -> None:
    hold = Hold(max_age_ns=5 * S, max_events=100)
    hold.admit([opened(A, "/1")], now=0)
    out, ended = hold.release(lambda cid: "pod_sandbox", now=1)
    assert out == [] and ended == [A] and hold.dropped == {"pod_sandbox": 1}


def test_default_timeout_cause_is_not_found() -> None:
    hold = Hold(max_age_ns=1, max_events=100)
    hold.admit([opened(A, "/1")], now=0)
    hold.release(lambda cid: None, now=1)
    assert hold.dropped == {NOT_FOUND: 1}


def test_known_and_host_events_pass_straight_through() -> None:
    hold = Hold(max_age_ns=5 * S, max_events=100)
    known, host = opened(A, "/k", image="redis"), opened("host", "/h")
    out, new = hold.admit([known, host], now=0)
    assert out == [known, host] and new == [] and hold.count == 0


def test_past_max_events_new_ones_are_dropped_and_counted() -> None:
    hold = Hold(max_age_ns=5 * S, max_events=2)
    out, new = hold.admit([opened(A, "/1"), opened(A, "/2"), opened(B, "/3"), opened(A, "/4")], now=0)
    assert out == [] and new == [A] and hold.count == 2
    assert hold.dropped == {HOLD_OVERFLOW: 2}
    released, _ = hold.release(lambda cid: Workload(container_id=cid, image_name="app"), now=1)
    assert paths(released) == ["/1", "/2"]


def test_registry_restarted_while_held_still_releases() -> None:
    """The registry is rebuilt from the bucket (a NATS restart replays every entry):
    while it is empty the events wait; once it is back they are released."""
    hold = Hold(max_age_ns=5 * S, max_events=100)
    reg = Registry()
    hold.admit([opened(A, "/1")], now=0)
    reg.apply(wl.key(A), wl.encode(Workload(container_id=A, image_name="old")))
    restarted = Registry()  # the watch restarted: nothing known until the bucket is replayed
    assert hold.release(restarted.get, now=1 * S) == ([], [])
    restarted.apply(wl.key(A), wl.encode(Workload(container_id=A, image_name="app")))
    out, _ = hold.release(restarted.get, now=2 * S)
    assert [e.container.image_name for e in out] == ["app"]  # type: ignore[attr-defined]


def test_status_names_each_cause_with_examples_and_a_hint() -> None:
    from services.runtime.diagnostics import identity_report

    beat = {
        "service": "collector",
        "instance": "node-1",
        "sources": ["podman (/var/lib/containers/storage)"],
        "counters": {"events": 10, "unresolved_not_found": 4, "unresolved_pod_sandbox": 0, "unknown_layout": 2},
        "samples": {"unresolved_not_found": [A], "unknown_layout": ["/odd/x-" + B]},
    }
    [report] = identity_report([beat, {"service": "throttler", "instance": "t", "counters": {}}])
    assert report["node"] == "node-1" and report["sources"] == beat["sources"]
    assert [(p["cause"], p["events"], p["examples"]) for p in report["unresolved"]] == [
        ("unknown_layout", 2, ["/odd/x-" + B]),
        ("not_found", 4, [A]),
    ]
    assert all(p["hint"] for p in report["unresolved"])
