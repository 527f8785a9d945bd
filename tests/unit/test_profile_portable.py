"""Portable profiles, pure: a learned version → document → JSON → document; the document imported
through the learner's core (ImportBehaviour): a fresh learner ends with the same version, one that
learned part of it with the union; output ids derive from the command; a second import changes
nothing; chunks stay under their size limit and carry every behaviour once; a replay of the log
(events, commands and their markers) rebuilds the same state."""

from __future__ import annotations

import msgspec
import pytest

from contracts.codec import encode_batch, encode_json
from contracts.events import EventBatch, RawEvent
from contracts.profiles import (
    BehaviourAdded,
    ImportBehaviour,
    ProfileDocument,
    ProfileEvent,
    SetState,
    StateChanged,
    VersionFirstSeen,
)
from services.audit_report_writer import modeling, portable
from services.profile_learner import core, replay
from services.profile_learner.sim import connect_, dns_, exec_, ns, open_, start, syscalls_, tick
from tests.sim import Sim

S = core.SECOND
IMAGE, TAG = "shop/web", "2.0"
SHIM = ("/usr/bin/containerd-shim", "/bin/sh")


def cfg(**kw: object) -> core.Config:
    return core.config(stable=10, warmup_period=5 * S, unstable_time=600 * S, **kw)  # type: ignore[arg-type]


def trace(image: str = IMAGE, tag: str = TAG) -> list[RawEvent]:
    return [
        start(0, image, tag),
        exec_(1, image, tag, "/usr/sbin/nginx", ancestors=SHIM),
        open_(1, image, tag, "/etc/nginx/nginx.conf", exe="/usr/sbin/nginx"),
        open_(2, image, tag, "/var/log/nginx/access.log", flags=0o2001, exe="/usr/sbin/nginx"),
        open_(3, image, tag, "/etc/nginx/nginx.conf", flags=0o2, exe="/usr/sbin/nginx"),  # r, then rw
        dns_(2, image, tag, "api.github.com"),
        connect_(2, image, tag, "10.1.2.3", 5432, exe="/usr/sbin/nginx"),
        connect_(2, image, tag, "93.184.216.34", 443, exe="/usr/sbin/nginx"),
        syscalls_(2, image, tag, ["read", "write", "epoll_wait"], exe="/usr/sbin/nginx"),
    ]


def learned() -> Sim:
    """A version stable for every type but dns (an operator put it back to learning)."""
    sim = Sim(cfg())
    sim.feed(*trace())
    sim.feed(tick(20))
    sim.command(SetState(id="op", image_name=IMAGE, image_tag=TAG, state="learning", event_type="dns"))
    return sim


# What `profiles show` says of a version that a document carries. The rest of the summary counts this
# cluster's own containers (starts, replicas, drift, loss): evidence an import does not transfer.
LEARNED = ("image_tag", "first_seen", "last_seen", "states", "sizes", "size", "last_new")


def version_of(sim: Sim, image: str = IMAGE, tag: str = TAG) -> dict[str, object]:
    summary = core.summary(sim.state.profiles[image])
    version = next(v for v in summary["versions"] if v["image_tag"] == tag)
    return {k: v for k, v in version.items() if k in LEARNED}


def export(sim: Sim, image: str = IMAGE, tag: str = TAG) -> ProfileDocument:
    behaviours = [e for e in modeling.learned_behaviour(sim.events) if isinstance(e, BehaviourAdded)]
    now = sim.state.profiles[image].now
    return portable.document(behaviours, version_of(sim, image, tag), image_name=image, event_time=now)


def commands(
    doc: ProfileDocument, prefix: str = "imp", max_bytes: int = 256 * 1024, **target: str
) -> list[ImportBehaviour]:
    image, tag = target.get("image", doc.image_name), target.get("tag", doc.image_tag)
    return portable.commands(doc, image_name=image, image_tag=tag, partition=0, id_prefix=prefix, max_bytes=max_bytes)


def import_into(sim: Sim, doc: ProfileDocument, prefix: str = "imp", **kw: object) -> list[ProfileEvent]:
    return [e for cmd in commands(doc, prefix, **kw) for e in sim.command(cmd)]  # type: ignore[arg-type]


def without_times(doc: ProfileDocument) -> dict[str, object]:
    data = msgspec.to_builtins(doc)
    for learned_type in data["event_types"].values():
        for b in learned_type["behaviours"]:
            b.pop("first_seen", None)
            b.pop("last_seen", None)
    data.pop("event_time")
    return data


# --- the document --------------------------------------------------------------------------------


def test_document_round_trips_through_its_json() -> None:
    doc = export(learned())
    text = portable.encode(doc)
    assert text.endswith("}\n") and portable.decode(text) == doc
    assert portable.encode(portable.decode(text)) == text


def test_document_holds_the_version_states_counts_and_behaviour_times() -> None:
    sim = learned()
    doc = export(sim)
    v = version_of(sim)
    assert (doc.first_seen, doc.last_seen) == (v["first_seen"], v["last_seen"])
    assert {et: t.state for et, t in doc.event_types.items()} == v["states"]
    assert {et: t.count for et, t in doc.event_types.items()} == v["sizes"]
    files = {b.behaviour: b for b in doc.event_types["open"].behaviours}
    conf = files["/etc/nginx/nginx.conf"]
    assert (conf.access, conf.first_seen, conf.last_seen) == ("rw", ns(1), ns(3))  # access grew at 3 s
    [nginx] = doc.event_types["exec"].behaviours
    assert nginx.lineage == [*SHIM, "/usr/sbin/nginx"]


@pytest.mark.parametrize(
    "text",
    [
        b"not json",
        b'{"kind":"model.v1","image_name":"a","image_tag":"1"}',
        b'{"kind":"profile_document.v1","image_name":"a","image_tag":"1",'
        b'"event_types":{"exec":{"state":"calm","count":0}}}',
        b'{"kind":"profile_document.v1","image_name":"a"}',
    ],
)
def test_decode_refuses_what_is_not_a_profile_document(text: bytes) -> None:
    with pytest.raises(portable.DocumentInvalid):
        portable.decode(text)


# --- importing through the learner's core -------------------------------------------------------------


def test_import_into_a_fresh_learner_gives_the_same_version() -> None:
    source = learned()
    doc = export(source)
    fresh = Sim(cfg())
    events = import_into(fresh, doc)
    assert version_of(fresh) == version_of(source)
    assert without_times(export(fresh)) == without_times(doc)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "VersionFirstSeen" and kinds.count("BehaviourAdded") == sum(
        t.count for t in doc.event_types.values()
    )
    changed = [(e.event_type, e.new_state, e.reason) for e in events if isinstance(e, StateChanged)]
    assert ("dns", "learning", "import") in changed and ("exec", "stable", "import") in changed


def test_import_unites_with_what_the_version_learned_and_keeps_its_states() -> None:
    doc = export(learned())
    sim = Sim(cfg())
    sim.feed(
        start(100, IMAGE, TAG),
        exec_(101, IMAGE, TAG, "/usr/sbin/nginx", ancestors=SHIM),  # known to the document
        open_(101, IMAGE, TAG, "/etc/nginx/nginx.conf", exe="/usr/sbin/nginx"),  # r; the document has rw
        exec_(102, IMAGE, TAG, "/bin/healthcheck", ancestors=SHIM),  # only here
    )
    before = dict(sim.version(IMAGE, TAG).states)
    events = import_into(sim, doc)
    added = [(e.event_type, e.behaviour, e.access) for e in events if isinstance(e, BehaviourAdded)]
    assert ("exec", "/usr/sbin/nginx", "") not in added  # known: not inserted again
    assert ("open", "/etc/nginx/nginx.conf", "rw") in added  # the missing access bit
    assert not any(isinstance(e, (VersionFirstSeen, StateChanged)) for e in events)
    v = sim.version(IMAGE, TAG)
    assert v.states == before
    assert v.sizes["exec"] == 2 and v.sizes["open"] == doc.event_types["open"].count
    assert {k for d in v.behaviours["exec"].values() for k in d} == {core.LINEAGE_SEP.join(SHIM)}
    assert set(v.behaviours["exec"]) == {"/usr/sbin/nginx", "/bin/healthcheck"}


def test_import_ids_derive_from_the_command_and_a_second_import_changes_nothing() -> None:
    doc = export(learned())
    sim = Sim(cfg())
    [cmd] = commands(doc)
    events = sim.command(cmd)
    assert [e.id for e in events] == [f"pl:{cmd.id}:{n}" for n in range(len(events))]
    state = core.encode_state(sim.state)
    assert import_into(sim, doc, prefix="again") == []
    assert core.encode_state(sim.state) == state


def test_import_into_another_image_and_tag() -> None:
    doc = export(learned())
    sim = Sim(cfg())
    import_into(sim, doc, image="web-copy", tag="canary")
    assert sim.tags("web-copy") == ["canary"]
    copied = version_of(sim, "web-copy", "canary")
    assert copied["sizes"] == version_of(learned())["sizes"]


def test_dns_names_are_cut_to_the_learner_depth_and_disabled_types_are_skipped() -> None:
    doc = export(learned())
    shallow = Sim(cfg(dns_depth=2, event_types=("exec", "dns")))
    import_into(shallow, doc)
    v = shallow.version(IMAGE, TAG)
    assert set(v.behaviours["dns"][""]) == {"github.com"}
    assert v.sizes["open"] == 0 and v.sizes["exec"] == 1


def test_the_size_threshold_holds_for_imports() -> None:
    doc = export(learned())  # 3 syscalls
    sim = Sim(cfg(size_threshold=2))
    events = import_into(sim, doc)
    v = sim.version(IMAGE, TAG)
    assert v.sizes["syscalls"] == 2 and v.states["syscalls"] == "at_max_size"  # imported stable, then full
    assert any(isinstance(e, StateChanged) and e.reason == "size_threshold" for e in events)


def test_large_documents_travel_in_chunks_under_the_limit() -> None:
    sim = Sim(cfg())
    sim.feed(start(0, IMAGE, TAG), syscalls_(1, IMAGE, TAG, [f"sys_{i:04d}" for i in range(1500)]))
    doc = export(sim)
    cmds = commands(doc, max_bytes=8192)
    assert len(cmds) > 3
    assert all(len(encode_json(c)) <= 8192 for c in cmds)
    assert [(c.chunk, c.chunks) for c in cmds] == [(i, len(cmds)) for i in range(1, len(cmds) + 1)]
    assert len({c.id for c in cmds}) == len(cmds)
    assert [(et, b) for c in cmds for et, bs in c.behaviours.items() for b in bs] == portable.imported(doc)
    fresh = Sim(cfg())
    for cmd in cmds:
        fresh.command(cmd)
    assert version_of(fresh) == version_of(sim)


def test_a_replay_of_events_and_commands_rebuilds_the_same_state() -> None:
    """The log as the learner left it: EVENTS batches, COMMANDS (an import between two batches) and
    the CommandApplied positions; replay.rebuild must give the live state byte for byte."""
    doc = export(learned())
    c = cfg()
    live = core.State()
    first = EventBatch(node="n1", boot="b1", first_seq=0, events=trace()[:4])
    second = EventBatch(node="n1", boot="b1", first_seq=4, events=[*trace()[4:], tick(40)])
    core.apply_batch(live, c, first)
    cmds = commands(doc)
    for cmd in cmds:
        core.apply_command(live, c, cmd)
    core.apply_batch(live, c, second)
    events_log = [(1, encode_batch(first)), (2, encode_batch(second))]
    commands_log = [(i, encode_json(cmd)) for i, cmd in enumerate(cmds, start=1)]
    markers = {i: 1 for i in range(1, len(cmds) + 1)}  # applied right after EVENTS seq 1
    rebuilt = core.State()
    stats = replay.rebuild(rebuilt, c, events_log, commands_log, markers)
    assert stats.commands == len(cmds) and stats.undecodable == 0
    assert core.encode_state(rebuilt) == core.encode_state(live)
