"""Properties of the learner fold (Hypothesis): snapshots split a fold anywhere, batching does not
change what is learned or reported, redelivery changes nothing, a replay with commands equals the state."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.codec import encode_batch, encode_json
from contracts.events import ClockTicked, EventBatch, RawEvent
from contracts.profiles import EvictVersion, ResetProfile, SetState
from services.profile_learner import core, replay
from services.profile_learner.sim import dns_, exec_, ns, open_, start, stop, syscalls_, tick

CFG = core.config(
    stable=10, warmup_period=3 * core.SECOND, unstable_time=50 * core.SECOND, size_threshold=6, max_profiles=2
)
TAGS = ["v1", "v2", "v3"]


def _event(kind: int, t: float, img: str, tag: str, cid: str, w: int, flags: int) -> RawEvent:
    if kind == 0:
        return start(t, img, tag, cid)
    if kind == 1:
        return exec_(t, img, tag, f"/bin/p{w}", cid=cid)
    if kind == 2:
        return dns_(t, img, tag, f"h{w}.example.com", cid=cid)
    if kind == 3:
        return syscalls_(t, img, tag, [f"s{w}", "read"], cid=cid)
    if kind == 4:
        return open_(t, img, tag, f"/data/{w}/f", flags=flags, cid=cid)
    if kind == 5:
        return tick(t)
    return stop(t, img, tag, cid)


@st.composite
def traces(draw: Any) -> list[RawEvent]:
    t = 0.0
    out: list[RawEvent] = []
    for _ in range(draw(st.integers(1, 50))):
        t += draw(st.sampled_from([0, 0.4, 1, 4, 11, 30]))
        img = draw(st.sampled_from(["a", "b", "c"]))
        tag = draw(st.sampled_from(TAGS))
        cid = f"{img}-{tag}-{draw(st.integers(0, 1))}"
        w = draw(st.integers(0, 4))
        flags = draw(st.sampled_from([0, 1, 2]))
        out.append(_event(draw(st.integers(0, 6)), t, img, tag, cid, w, flags))
    return out


def batches(events: list[RawEvent], cuts: list[int]) -> list[EventBatch]:
    bounds = sorted({0, len(events), *[c % (len(events) + 1) for c in cuts]})
    return [
        EventBatch(node="n", boot="b", first_seq=lo, events=events[lo:hi])
        for lo, hi in zip(bounds, bounds[1:], strict=False)
        if hi > lo
    ]


def run(state: core.State, bs: list[EventBatch]) -> tuple[list[Any], list[Any], list[int]]:
    evs, dbs = core.fold(state, CFG, bs)
    return evs, [d for db in dbs for d in db.drifts], [db.watermark for db in dbs]


@settings(max_examples=60, deadline=None)
@given(traces(), st.lists(st.integers(0, 60), max_size=6), st.integers(0, 10))
def test_fold_a_then_snapshot_then_b_equals_fold_a_plus_b(events: list[RawEvent], cuts: list[int], split: int) -> None:
    bs = batches(events, cuts)
    k = split % (len(bs) + 1)
    whole = core.State()
    expected = run(whole, bs)
    part = core.State()
    first = run(part, bs[:k])
    restored = core.decode_state(core.encode_state(part))  # the snapshot
    second = run(restored, bs[k:])
    assert core.encode_state(restored) == core.encode_state(whole)
    assert (first[0] + second[0], first[1] + second[1]) == expected[:2]


@settings(max_examples=60, deadline=None)
@given(traces(), st.lists(st.integers(0, 60), max_size=6), st.lists(st.integers(0, 60), max_size=6))
def test_batching_changes_nothing_learned_or_reported(
    events: list[RawEvent], cuts_a: list[int], cuts_b: list[int]
) -> None:
    sa, sb = core.State(), core.State()
    a, b = run(sa, batches(events, cuts_a)), run(sb, batches(events, cuts_b))
    assert a[:2] == b[:2]
    assert sa.profiles == sb.profiles and sa.containers == sb.containers


@settings(max_examples=60, deadline=None)
@given(traces(), st.lists(st.integers(0, 60), max_size=6), st.lists(st.integers(0, 60), max_size=4))
def test_redelivered_batches_change_nothing(events: list[RawEvent], cuts: list[int], dups: list[int]) -> None:
    bs = batches(events, cuts)
    with_dups = list(bs)
    for d in dups:  # a batch delivered again, some time after its first delivery
        i = d % len(bs)
        after = with_dups.index(bs[i]) + 1
        with_dups.insert(min(len(with_dups), after + d % 3), bs[i])
    clean, noisy = core.State(), core.State()
    assert run(clean, bs) == run(noisy, with_dups)
    assert core.encode_state(clean) == core.encode_state(noisy)


@st.composite
def commands(draw: Any) -> list[tuple[int, Any]]:
    out = []
    for i in range(draw(st.integers(0, 5))):
        img, tag = draw(st.sampled_from(["a", "b"])), draw(st.sampled_from(TAGS))
        cmd = draw(
            st.sampled_from(
                [
                    SetState(
                        id=f"c{i}",
                        image_name=img,
                        image_tag=tag,
                        state=draw(st.sampled_from(["learning", "stable", "unstable", "warmup"])),
                        event_type=draw(st.sampled_from([None, "exec", "dns"])),
                    ),
                    EvictVersion(id=f"c{i}", image_name=img, image_tag=tag),
                    ResetProfile(id=f"c{i}", image_name=img, image_tag=draw(st.sampled_from([None, tag]))),
                ]
            )
        )
        out.append((draw(st.integers(0, 60)), cmd))
    return out


@settings(max_examples=60, deadline=None)
@given(traces(), st.lists(st.integers(0, 60), max_size=6), commands())
def test_replay_with_command_markers_equals_the_live_state(
    events: list[RawEvent], cuts: list[int], cmds: list[tuple[int, Any]]
) -> None:
    bs = batches(events, cuts)
    live = core.State()
    markers: dict[int, int] = {}
    cmd_log = []
    pending = sorted(((at % (len(bs) + 1), i, c) for i, (at, c) in enumerate(cmds)), key=lambda x: (x[0], x[1]))
    for seq in range(len(bs) + 1):  # commands arrive between batches, as the COMMANDS loop interleaves
        for at, _i, cmd in [p for p in pending if p[0] == seq]:
            core.apply_command(live, CFG, cmd)
            cmd_log.append((len(cmd_log) + 1, encode_json(cmd)))
            markers[len(cmd_log)] = at  # applied right after EVENTS seq `at` (batch seq = index + 1)
        if seq < len(bs):
            core.apply_batch(live, CFG, bs[seq])
    rebuilt = core.State()
    replay.rebuild(rebuilt, CFG, [(i + 1, encode_batch(b)) for i, b in enumerate(bs)], cmd_log, markers)
    assert core.encode_state(rebuilt) == core.encode_state(live)


@settings(max_examples=60, deadline=None)
@given(traces(), st.lists(st.integers(0, 60), max_size=6), st.lists(st.integers(0, 60), min_size=1, max_size=6))
def test_another_nodes_wall_clock_ticks_change_nothing_learned_or_reported(
    events: list[RawEvent], cuts: list[int], at: list[int]
) -> None:
    """A trace (node n1) collected into a Vigil whose live collector ticks on today's wall clock
    (node "live", a day later, its own publisher) learns and reports exactly what an idle Vigil does."""
    bs = batches(events, cuts)
    day = 86_400.0
    live = [
        EventBatch(node="live", boot="l", first_seq=i, events=[ClockTicked(time=ns(day + i), node="live")])
        for i in range(len(at))
    ]
    mixed = list(bs)
    for i, pos in enumerate(at):
        mixed.insert(pos % (len(mixed) + 1), live[i])
    idle, busy = core.State(), core.State()
    assert run(idle, bs)[:2] == run(busy, mixed)[:2]
    assert idle.profiles == busy.profiles and idle.containers == busy.containers
