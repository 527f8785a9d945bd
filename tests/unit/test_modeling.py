"""Behaviour models: learned behaviour / raw events -> model document, replica merge, modelling windows."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import ClockTicked, Container, ExecObserved, Process, SyscallsObserved
from contracts.models import CAPABILITIES_UNKNOWN, BehaviourModel, StartModeling
from services.audit_report_writer import modeling
from services.audit_report_writer.modeling import Observation, Windows, access_of, perms_text
from tests.unit.golden import assert_golden
from tests.unit.golden.behaviour import SEC, SEED_SYSCALLS, T0, replica_events, seed_behaviour


def model_json(model: BehaviourModel) -> str:
    return msgspec.json.format(msgspec.json.encode(model), indent=2).decode() + "\n"


def seed_model() -> BehaviourModel:
    return modeling.model_of_learned(seed_behaviour(), "debian", "10")


def window_request(**kw: object) -> StartModeling:
    base: dict[str, object] = {
        "id": "req-1",
        "time": T0,
        "image_name": "nginx",
        "image_tag": "1.25",
        "duration": 10 * SEC,
        "annotations": {"container.models.vigil.dev/proxy": "unconfined"},
    }
    base.update(kw)
    return StartModeling(**base)  # type: ignore[arg-type]


def run_window(req: StartModeling) -> tuple[Windows, list[modeling.Closed], list[str]]:
    state = Windows()
    statuses = [s.status for s in modeling.request(state, req)]
    closed: list[modeling.Closed] = []
    for event in [*replica_events(T0), ClockTicked(time=T0 + 10 * SEC)]:
        closed += modeling.advance(state, event)
    return state, closed, statuses


# --- learned behaviour -> model --------------------------------------------------------


def test_seed_model_golden() -> None:
    assert_golden("model_seed.json", model_json(seed_model()))


def test_seed_model_content() -> None:
    model = seed_model()
    files = {f.path: f.perms for f in model.files}
    assert files["/root/c1"] == "rw"  # "a" dropped: w implies it
    assert files["/usr/lib/x86_64-linux-gnu/**"] == "mr"  # library dir -> **, mapped
    assert files["/usr/bin/id"] == "rix"  # executed: read + inherit
    assert files["/proc/*/status"] == "r"  # pid generalised
    assert files["/tmp/**"] == "w"  # anything under /tmp/ (vArmor)
    assert [e.path for e in model.executions] == ["/usr/bin/id", "/usr/bin/sleep", "/usr/bin/unshare"]
    assert "/usr/bin/wget" not in {e.path for e in model.executions}  # other tag
    assert len(model.syscalls) == len(SEED_SYSCALLS) and model.syscalls == sorted(model.syscalls, key=lambda s: s.name)
    assert model.capabilities.known is False and model.capabilities.reason == CAPABILITIES_UNKNOWN
    assert model.network.sockets == ["inet dgram", "inet stream"]
    assert model.replicas == 1 and model.containers == []


def test_permission_letters() -> None:
    assert access_of(0) == "r" and access_of(0o1) == "w" and access_of(0o2) == "rw"
    assert access_of(0o2001) == "a" and access_of(0o2002) == "ra"  # O_APPEND: append only
    assert perms_text({"a", "w", "r"}) == "rw"
    assert perms_text({"a"}) == "a"
    assert perms_text({"ix", "r", "m"}) == "mrix"


_obs = st.builds(
    Observation,
    replica=st.sampled_from(["", "x@1", "y@2"]),
    event_type=st.sampled_from(["exec", "open", "connect", "dns", "syscalls"]),
    behaviour=st.sampled_from(
        ["/usr/bin/id", "/proc/12/stat", "tcp:1.2.3.4:80", "example.com", "read", "/lib/libc.so"]
    ),
    access=st.sampled_from(["", "r", "w", "wa", "rx"]),
    lineage=st.sampled_from([(), ("/bin/sh",), ("/usr/bin/containerd-shim", "/bin/sh")]),
)


@settings(max_examples=60)
@given(st.lists(_obs, max_size=25), st.randoms())
def test_model_ignores_order_and_duplicates(observations: list[Observation], rnd: object) -> None:
    shuffled = [*observations, *observations]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    one = modeling.build_model(modeling.fold(observations), image_name="i", image_tag="t")
    two = modeling.build_model(modeling.fold(shuffled), image_name="i", image_tag="t")
    assert msgspec.json.encode(one) == msgspec.json.encode(two)


# --- replica merge via a modelling window --------------------------------------------------


def test_replica_merge_golden() -> None:
    _, closed, statuses = run_window(window_request())
    assert statuses == ["Modeling"]
    assert len(closed) == 1 and closed[0].model is not None
    assert_golden("model_replicas.json", model_json(closed[0].model))


def test_replica_coverage_shows_what_one_replica_did() -> None:
    _, closed, _ = run_window(window_request())
    model = closed[0].model
    assert model is not None
    assert model.replicas == 2 and model.containers == ["web@a", "web@b"]  # proxy opted out, 1.24 not selected
    syscalls = {s.name: s.coverage for s in model.syscalls}
    assert syscalls["read"] == 2 and syscalls["clone"] == 1
    assert "ptrace" not in syscalls  # only the opted-out sidecar did it
    files = {f.path: (f.perms, f.coverage) for f in model.files}
    assert files["/var/log/nginx/access.log"] == ("a", 2)
    assert files["/tmp/**"] == ("rw", 1)
    assert {e.path: e.coverage for e in model.executions} == {"/bin/sh": 1, "/usr/sbin/nginx": 2}
    assert [(r.addr, r.port, r.coverage) for r in model.network.egress] == [("10.1.2.3", 8080, 1)]


def test_container_selector_keeps_only_named_containers() -> None:
    _, closed, _ = run_window(window_request(containers=["proxy"], annotations={}))
    model = closed[0].model
    assert model is not None and model.containers == ["proxy@c"]
    assert [s.name for s in model.syscalls] == ["ptrace"]


def test_window_uses_event_time_only() -> None:
    state = Windows()
    modeling.request(state, window_request(time=T0 + 2 * SEC, duration=2 * SEC))
    ctr = Container(id="a", image_name="nginx", image_tag="1.25", name="web")
    proc = Process(pid=1, path="/usr/sbin/nginx")
    assert (
        modeling.advance(state, SyscallsObserved(time=T0 + SEC, container=ctr, process=proc, syscalls=["early"])) == []
    )
    assert modeling.advance(state, ExecObserved(time=T0 + 3 * SEC, container=ctr, process=proc)) == []
    assert state.open  # not closed before event time reaches the end
    closed = modeling.advance(
        state, SyscallsObserved(time=T0 + 4 * SEC, container=ctr, process=proc, syscalls=["late"])
    )
    assert len(closed) == 1 and not state.open
    model = closed[0].model
    assert model is not None and model.syscalls == []  # "early" before start, "late" at end: outside [start, end)
    assert (model.start, model.end) == (T0 + 2 * SEC, T0 + 4 * SEC)


def test_bad_requests_and_empty_windows_are_errors() -> None:
    state = Windows()
    assert [s.status for s in modeling.request(state, window_request(id="zero", duration=0))] == ["Error"]
    assert [s.status for s in modeling.request(state, window_request(id="noimg", image_name=""))] == ["Error"]
    assert [s.status for s in modeling.request(state, window_request(id="ok", image_name="redis"))] == ["Modeling"]
    assert modeling.request(state, window_request(id="ok", image_name="redis")) == []  # duplicate id: no-op
    closed = modeling.advance(state, ClockTicked(time=T0 + 11 * SEC))
    assert len(closed) == 1 and closed[0].model is None and "no behaviour" in closed[0].reason


def test_request_without_time_starts_at_watermark() -> None:
    state = Windows()
    modeling.advance(state, ClockTicked(time=T0 + 7 * SEC))
    [status] = modeling.request(state, window_request(time=0))
    assert status.time == T0 + 7 * SEC and state.open["req-1"].end == T0 + 17 * SEC


def test_opt_out_annotation_parsing() -> None:
    ann = {
        "container.models.vigil.dev/c0": "unconfined",
        "container.models.vigil.dev/c1": "enabled",
        "container.apparmor.security.beta.varmor.org/c2": "unconfined",
    }
    assert modeling.opted_out(ann) == frozenset({"c0"})


# --- whose clock closes a window (docs/runtime.md, "Event time") -------------------------------------


def _on(node: str, events: list) -> list:
    return [msgspec.structs.replace(e, node=node) for e in events]


def _fold_window(state: Windows, stream: list[tuple[int, object]]) -> list[modeling.Closed]:
    return [c for part, event in stream for c in modeling.advance(state, event, part)]  # type: ignore[arg-type]


def test_a_window_closes_on_its_image_partition_not_on_another_one() -> None:
    """A trace's ticks reach every partition; its behaviour only the image's. A tick of another
    partition's batch past the end must not close the window before the behaviour is read."""
    state = Windows(partitions=4)
    modeling.request(state, window_request())
    mine = state.open["req-1"].partition
    other = (mine + 1) % 4
    trace = _on("rec", [*replica_events(T0), ClockTicked(time=T0 + 10 * SEC)])
    stream = [(other, e) for e in trace if isinstance(e, ClockTicked)] + [(mine, e) for e in trace]
    [closed] = _fold_window(state, stream)
    assert closed.model is not None and closed.model.containers == ["web@a", "web@b"]
    assert model_json(closed.model) == model_json(run_window(window_request())[1][0].model)  # type: ignore[arg-type]


def test_a_live_clock_far_past_the_window_never_closes_it() -> None:
    """A trace replayed into a Vigil whose live collector ticks on today's wall clock: the live
    node was past the window's end when the window first heard from it, so only the trace's
    own clock closes it — with the model an idle Vigil gives."""
    day = 86_400 * SEC
    trace = _on("rec", [*replica_events(T0), ClockTicked(time=T0 + 10 * SEC)])
    live = [ClockTicked(time=T0 + day + i * SEC, node="live") for i in range(4)]
    for before in (0, 2):  # the live node heard from before the request, or only after it
        state = Windows()
        closed = _fold_window(state, [(0, e) for e in live[:before]])
        modeling.request(state, window_request())
        closed += _fold_window(state, [(0, e) for e in [*live[before:3], *trace[:5], live[3], *trace[5:]]])
        [done] = closed
        assert done.model is not None and "node 'rec'" in done.clock
        assert model_json(done.model) == model_json(run_window(window_request())[1][0].model)  # type: ignore[arg-type]


def test_the_error_names_the_clock_that_closed_the_window() -> None:
    state = Windows(partitions=4)
    modeling.request(state, window_request(image_name="redis"))
    part = state.open["req-1"].partition
    modeling.advance(state, ClockTicked(time=T0 + SEC, node="node-7"), part)
    [closed] = modeling.advance(state, ClockTicked(time=T0 + 10 * SEC, node="node-7"), part)
    assert closed.model is None and closed.time == T0 + 10 * SEC
    assert closed.reason == (
        "no behaviour observed for the selector in the window (nothing seen; closed by the clock of node 'node-7' "
        f"on EVENTS partition {part} at 2026-01-01T00:00:10.000000000Z)"
    )


def test_a_request_without_a_start_and_no_event_time_yet_begins_at_the_first_event() -> None:
    state = Windows()
    [status] = modeling.request(state, window_request(time=0))
    assert status.status == "Modeling" and state.open["req-1"].pending
    assert modeling.advance(state, ClockTicked(time=T0 + 7 * SEC, node="n1")) == []
    assert (state.open["req-1"].start, state.open["req-1"].end) == (T0 + 7 * SEC, T0 + 17 * SEC)
