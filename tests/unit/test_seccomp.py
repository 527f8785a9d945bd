"""seccomp profile: golden files, allow-list grouped by coverage, OCI LinuxSeccomp validation."""

from __future__ import annotations

import json

import pytest

from contracts.models import BehaviourModel
from services.audit_report_writer import seccomp
from services.audit_report_writer.seccomp import SeccompInvalid, validate
from tests.unit.golden import assert_golden
from tests.unit.golden.behaviour import SEED_SYSCALLS
from tests.unit.test_apparmor import replicas_model
from tests.unit.test_modeling import seed_model


def test_seed_profile_golden() -> None:
    text = seccomp.render(seed_model())
    assert_golden("seccomp_seed.json", text)
    validate(text)


def test_replicas_profile_golden() -> None:
    text = seccomp.render(replicas_model())
    assert_golden("seccomp_replicas.json", text)
    validate(text)


def test_allow_list_shape() -> None:
    doc = json.loads(seccomp.render(seed_model()))
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and doc["defaultErrnoRet"] == 1
    assert doc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    [group] = doc["syscalls"]
    assert group["action"] == "SCMP_ACT_ALLOW" and group["names"] == sorted(SEED_SYSCALLS)


def test_groups_by_coverage_most_covered_first() -> None:
    doc = json.loads(seccomp.render(replicas_model()))
    assert [g["names"] for g in doc["syscalls"]] == [
        ["accept4", "close", "epoll_wait", "openat", "read", "write"],  # both replicas
        ["clone", "execve", "wait4"],  # only web@b
    ]


def test_rendering_is_deterministic() -> None:
    assert seccomp.render(seed_model()) == seccomp.render(seed_model())


def test_empty_model_denies_everything() -> None:
    doc = json.loads(seccomp.render(BehaviourModel(profile_name="p", image_name="i")))
    assert doc.get("syscalls", []) == [] and doc["defaultAction"] == "SCMP_ACT_ERRNO"


VALID = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ],
}


def test_validate_accepts_every_spec_field() -> None:
    profile = validate(json.dumps(VALID))
    assert profile.syscalls[1].args[0].op == "SCMP_CMP_EQ"


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"defaultAction": "SCMP_ACT_DENY"}, "defaultAction"),
        ({"architectures": ["SCMP_ARCH_Z80"]}, "architectures"),
        ({"flags": ["SECCOMP_FILTER_FLAG_FAST"]}, "flags"),
        ({"defaultErrnoRet": -1}, "defaultErrnoRet"),
        ({"syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}, "names"),
        ({"syscalls": [{"names": ["read"]}]}, "action"),
        ({"syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW"}]}, "name"),
        (
            {
                "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "EQ"}]}
                ]
            },
            "op",
        ),
        (
            {
                "syscalls": [
                    {
                        "names": ["read"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 2**64, "op": "SCMP_CMP_EQ"}],
                    }
                ]
            },
            "value",
        ),
        ({"defaultAction": None}, "defaultAction"),
        ({"comment": "not in the spec"}, "comment"),
    ],
)
def test_validate_rejects(patch: dict[str, object], needle: str) -> None:
    doc = {**VALID, **patch}
    if patch.get("defaultAction", "") is None:
        del doc["defaultAction"]
    with pytest.raises(SeccompInvalid, match=needle):
        validate(json.dumps(doc))
