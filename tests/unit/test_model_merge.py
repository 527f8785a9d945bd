"""Replica merge and coverage, ported from the Security Profiles Operator's recording merger.

Facts (not code) from kubernetes-sigs/security-profiles-operator @ a2e4c4bdf47d:
internal/pkg/manager/recordingmerger/coverage_test.go (the syscall coverage document),
merge_utils_test.go (TestMergeProfiles, TestNormalize*) and apparmor_test.go (TestMergeFilesystem).
SPO merges one partial profile per container; Vigil merges one replica per container.
"""

from __future__ import annotations

import copy
import random

import msgspec
import pytest

from contracts.events import Container, ContainerStarted, Process, SyscallsObserved
from contracts.models import BehaviourModel, StartModeling
from services.audit_report_writer import modeling, seccomp
from services.audit_report_writer.modeling import Observation, Replica, Windows
from tests.unit.golden.behaviour import SEC, T0


def syscalls(replica: str, *names: str, exe: str = "/bin/app") -> list[Observation]:
    return [Observation(replica, "syscalls", name, lineage=(exe,)) for name in names]


def merge(replicas: dict[str, Replica]) -> BehaviourModel:
    return modeling.build_model(replicas, image_name="app", image_tag="1")


def coverage(observations: list[Observation], empty: tuple[str, ...] = ()) -> tuple[int, dict[str, int]] | None:
    replicas = modeling.fold(observations)
    for name in empty:
        replicas.setdefault(name, Replica())  # a container seen that made no syscall
    doc = merge(replicas).syscall_coverage
    return None if doc is None else (doc.total, doc.syscalls)


# --- TestSeccompCoverageAnnotation -----------------------------------------------------------------
COVERAGE_CASES = [
    (
        "heterogeneous",
        syscalls("a", "read", "write", "openat")
        + syscalls("b", "read", "write", "socket")
        + syscalls("c", "read", "write"),
        (),
        (3, {"openat": 1, "read": 3, "socket": 1, "write": 3}),
    ),
    (
        "homogeneous",
        syscalls("a", "read", "write") + syscalls("b", "read", "write") + syscalls("c", "read", "write"),
        (),
        (3, {"read": 3, "write": 3}),
    ),
    ("single partial", syscalls("a", "read", "write"), (), (1, {"read": 1, "write": 1})),
    (
        "duplicate names in one rule",
        syscalls("a", "read", "read", "write") + syscalls("b", "read"),
        (),
        (2, {"read": 2, "write": 1}),
    ),
    (
        "same syscall across multiple rules",  # Vigil: two processes of one container
        syscalls("a", "read", exe="/bin/sh") + syscalls("a", "read") + syscalls("b", "write"),
        (),
        (2, {"read": 1, "write": 1}),
    ),
    (
        "different actions",  # counting is by name; Vigil's rules carry no action, the executable differs
        syscalls("a", "read") + syscalls("a", "write", exe="/usr/bin/x") + syscalls("b", "read"),
        (),
        (2, {"read": 2, "write": 1}),
    ),
    ("empty rules", syscalls("a", "read"), ("b",), (2, {"read": 1})),
    ("no partials", [], (), None),
]


@pytest.mark.parametrize(
    ("observations", "empty", "expected"), [c[1:] for c in COVERAGE_CASES], ids=[c[0] for c in COVERAGE_CASES]
)
def test_seccomp_coverage_document(
    observations: list[Observation], empty: tuple[str, ...], expected: tuple[int, dict[str, int]] | None
) -> None:
    assert coverage(observations, empty) == expected


def test_the_document_has_spos_exact_shape() -> None:
    """The annotation value TestSetSyscallCoverageAnnotation sets, byte for byte."""
    doc = merge(modeling.fold(syscalls("a", "read") + syscalls("b", "read"))).syscall_coverage
    assert msgspec.json.encode(doc) == b'{"version":"v1","total":2,"syscalls":{"read":2}}'


def test_a_replica_with_an_empty_syscall_list_counts_in_total() -> None:
    """'empty names list', through a modelling window: a container whose syscall set was empty
    (and one that only started) is a replica; "no behaviour observed" needs none to have any."""
    web = [Container(id=c, image_name="app", image_tag="1", name="web") for c in "abc"]
    proc = Process(pid=1, path="/bin/app")
    state = Windows()
    modeling.request(state, StartModeling(id="r", time=T0, image_name="app", image_tag="1", duration=10 * SEC))
    for event in [
        SyscallsObserved(time=T0 + SEC, container=web[0], process=proc, syscalls=[]),
        SyscallsObserved(time=T0 + SEC, container=web[1], process=proc, syscalls=["read"]),
        ContainerStarted(time=T0 + SEC, container=web[2]),
    ]:
        modeling.advance(state, event)
    [closed] = modeling.advance(
        state, SyscallsObserved(time=T0 + 10 * SEC, container=web[0], process=proc, syscalls=[])
    )
    assert closed.model is not None and closed.model.replicas == 3
    assert closed.model.syscall_coverage is not None
    assert (closed.model.syscall_coverage.total, closed.model.syscall_coverage.syscalls) == (3, {"read": 1})
    assert "# coverage" not in seccomp.render(closed.model)  # seccomp has no room for it: the model holds it


def test_deterministic_and_order_independent() -> None:
    base = syscalls("a", "read", "write", "openat") + syscalls("b", "read", "write", "socket")
    base += syscalls("c", "read", "write", "mmap")
    first = msgspec.json.encode(merge(modeling.fold(base)))
    rnd = random.Random(7)
    for _ in range(20):
        shuffled = list(base)
        rnd.shuffle(shuffled)
        assert msgspec.json.encode(merge(modeling.fold(shuffled))) == first


def test_does_not_mutate_the_replicas() -> None:
    replicas = modeling.fold(syscalls("a", "read", "read", "write") + syscalls("a", "read", exe="/bin/sh"))
    before = copy.deepcopy(replicas)
    merge(replicas)
    assert replicas == before


def test_no_cross_group_leak() -> None:
    group_a = merge(modeling.fold(syscalls("a1", "read", "openat") + syscalls("a2", "read"))).syscall_coverage
    group_b = merge(modeling.fold(syscalls("b1", "write", "socket"))).syscall_coverage
    assert group_a is not None and group_b is not None
    assert (group_a.total, group_a.syscalls) == (2, {"openat": 1, "read": 2})
    assert (group_b.total, group_b.syscalls) == (1, {"socket": 1, "write": 1})


def test_coverage_never_changes_the_merged_union() -> None:
    """TestMergeProfiles_SeccompUnionUnchanged and TestMergeTypedProfiles_ComputesCoverageBeforeMerge."""
    model = merge(modeling.fold(syscalls("a", "read", "write", "openat") + syscalls("b", "read", "write", "socket")))
    names = sorted(n for rule in seccomp.profile_of(model).syscalls for n in rule.names)
    assert names == ["openat", "read", "socket", "write"]
    assert {r.action for r in seccomp.profile_of(model).syscalls} == {"SCMP_ACT_ALLOW"}
    model = merge(modeling.fold(syscalls("a", "read", "write") + syscalls("b", "read", "socket")))
    assert model.syscall_coverage is not None
    assert model.syscall_coverage.syscalls == {"read": 2, "socket": 1, "write": 1}
    assert sorted(s.name for s in model.syscalls) == ["read", "socket", "write"]


# --- TestMergeProfiles --------------------------------------------------------------------------------


def test_two_seccomp_profiles_merge_to_their_union() -> None:
    model = merge(modeling.fold(syscalls("test-abc", "a", "b", "c") + syscalls("test-ced", "c", "e", "d")))
    assert [s.name for s in model.syscalls] == ["a", "b", "c", "d", "e"]


def test_two_apparmor_profiles_merge_to_their_union() -> None:
    """Executables are a union; a path one replica reads and another writes is read-write.
    (SPO's capabilities and raw sockets have no counterpart: Vigil captures neither.)"""
    first = Replica(
        execs={"/execA": (), "/execB": ()},
        files={
            "/read1": {"r"},
            "/merged-rw1": {"r"},
            "/write1": {"w"},
            "/merged-rw2": {"w"},
            "/readwrite1": {"r", "w"},
        },
    )
    second = Replica(execs={"/execA": (), "/execC": ()}, files={"/merged-rw1": {"w"}, "/merged-rw2": {"r", "w"}})
    model = merge({"test-foobarbaz1": first, "test-foobarbaz2": second})
    assert [e.path for e in model.executions] == ["/execA", "/execB", "/execC"]
    files = {f.path: f.perms for f in model.files}
    assert {p for p, perms in files.items() if perms == "r"} == {"/read1"}
    assert {p for p, perms in files.items() if perms == "w"} == {"/write1"}
    assert {p for p, perms in files.items() if perms == "rw"} == {"/merged-rw1", "/merged-rw2", "/readwrite1"}


# --- TestMergeFilesystem: a rule another rule's glob covers ------------------------------------------
BASE = {"/r/*": {"r"}, "/w/*": {"w"}, "/rw/*": {"r", "w"}}
FILESYSTEM_CASES = [
    ("empty", {}, {"/r/*": "r", "/w/*": "w", "/rw/*": "rw"}),
    ("matching", {"/r/foo": {"r"}, "/w/bar": {"w"}, "/rw/baz": {"r", "w"}}, {"/r/*": "r", "/w/*": "w", "/rw/*": "rw"}),
    ("subset", {"/rw/foo": {"r"}, "/rw/bar": {"w"}}, {"/r/*": "r", "/w/*": "w", "/rw/*": "rw"}),
    (
        "additive",
        {"/w/foo": {"r"}, "/r/bar": {"w"}},
        {"/r/*": "r", "/w/*": "w", "/rw/*": "rw", "/r/bar": "w", "/w/foo": "r"},
    ),
    (
        "additive2",
        {"/r/foo": {"r", "w"}, "/w/foo": {"r", "w"}},
        {"/r/*": "r", "/w/*": "w", "/rw/*": "rw", "/r/foo": "rw", "/w/foo": "rw"},
    ),
    (
        "new",
        {"/r2/foo": {"r"}, "/w2/bar": {"w"}, "/rw2/baz": {"r", "w"}},
        {"/r/*": "r", "/w/*": "w", "/rw/*": "rw", "/r2/foo": "r", "/w2/bar": "w", "/rw2/baz": "rw"},
    ),
]


def effective(model: BehaviourModel, path: str) -> str:
    """What AppArmor grants on ``path``: the union of every rule that matches it."""
    letters = {c for f in model.files if modeling.glob_regex(f.path).fullmatch(path) for c in f.perms}
    return modeling.perms_text(letters)


@pytest.mark.parametrize(
    ("additions", "expected"), [c[1:] for c in FILESYSTEM_CASES], ids=[c[0] for c in FILESYSTEM_CASES]
)
def test_merge_filesystem(additions: dict[str, set[str]], expected: dict[str, str]) -> None:
    model = merge({"base": Replica(files={k: set(v) for k, v in BASE.items()}), "other": Replica(files=additions)})
    assert {f.path: f.perms for f in model.files} == expected
    for path, perms in additions.items():
        assert set(modeling.perms_text(perms)) <= set(effective(model, path))


def test_additive_paths_are_read_write_in_effect() -> None:
    """SPO rewrites "additive" paths as read-write; Vigil keeps each rule's own letters and
    AppArmor grants the union of the rules that match, which is the same."""
    additions = {"/w/foo": {"r"}, "/r/bar": {"w"}}
    model = merge({"base": Replica(files={k: set(v) for k, v in BASE.items()}), "other": Replica(files=additions)})
    assert (effective(model, "/w/foo"), effective(model, "/r/bar")) == ("rw", "rw")


def test_a_folded_rule_counts_its_replicas_in_the_covering_rule() -> None:
    model = merge({"a": Replica(files={"/proc/*/status": {"r"}}), "b": Replica(files={"/proc/self/status": {"r"}})})
    assert [(f.path, f.coverage) for f in model.files] == [("/proc/*/status", 2)]
    tree = merge({"a": Replica(files={"/tmp/**": {"r", "w"}}), "b": Replica(files={"/tmp/x": {"r", "ix"}})})
    assert [f.path for f in tree.files] == ["/tmp/**", "/tmp/x"]  # ix is not covered: executing stays its own rule


# --- TestNormalize*: sorted, idempotent --------------------------------------------------------------


def test_the_model_is_normalised_and_merging_again_changes_nothing() -> None:
    replicas = {"z": Replica(files={"/z": {"r"}, "/a": {"r"}}, syscalls={"write", "read"})}
    model = merge(replicas)
    assert [f.path for f in model.files] == ["/a", "/z"] and [s.name for s in model.syscalls] == ["read", "write"]
    assert msgspec.json.encode(merge(replicas)) == msgspec.json.encode(model)
