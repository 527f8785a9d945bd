"""seccomp profile (OCI ``LinuxSeccomp`` JSON) from a behaviour model, and its validation (pure).

The profile is an allow-list: ``defaultAction: SCMP_ACT_ERRNO`` (errno
``EPERM``, ``defaultErrnoRet: 1``) and ``SCMP_ACT_ALLOW`` for every syscall the
model holds. Syscalls are grouped by coverage, most covered first: the first
group is what every replica did, later groups what only some did (the model
document says how many). Names inside a group are sorted; the JSON is
rendered with sorted keys and a trailing newline, so equal models give equal
bytes.

:class:`LinuxSeccomp` mirrors the OCI runtime-spec's ``LinuxSeccomp``
(config-linux.md / schema/defs-linux.json): field names, types and enums.
Unknown fields are refused (stricter than the spec's Go structs, which catch
typos silently); :func:`validate` adds the spec's prose rules (non-empty
``names``).
"""

from __future__ import annotations

import json
from typing import Literal

import msgspec
from msgspec import Struct

from contracts.errors import VigilError
from contracts.models import BehaviourModel

SeccompAction = Literal[
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
]
SeccompArch = Literal[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
]
SeccompFlag = Literal[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
]
SeccompOperator = Literal[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
]

UINT32 = msgspec.Meta(ge=0, le=2**32 - 1)
UINT64 = msgspec.Meta(ge=0, le=2**64 - 1)


class _Oci(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, rename="camel"):
    pass


class LinuxSeccompArg(_Oci, frozen=True):
    index: int
    value: int
    op: SeccompOperator
    value_two: int = 0


class LinuxSyscall(_Oci, frozen=True):
    names: list[str]
    action: SeccompAction
    errno_ret: int | None = None
    args: list[LinuxSeccompArg] = []


class LinuxSeccomp(_Oci, frozen=True):
    default_action: SeccompAction
    default_errno_ret: int | None = None
    architectures: list[SeccompArch] = []
    flags: list[SeccompFlag] = []
    listener_path: str = ""
    listener_metadata: str = ""
    syscalls: list[LinuxSyscall] = []


class SeccompInvalid(VigilError, ValueError):
    """A profile that is not a valid OCI LinuxSeccomp."""


# Docker/containerd convention: a 64-bit x86 host also runs 32-bit and x32 binaries.
ARCHITECTURES: dict[str, list[str]] = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
}

EPERM = 1


def _check_uint(name: str, value: int | None, bits: int) -> None:
    if value is not None and not 0 <= value < 2**bits:
        raise SeccompInvalid(f"{name}: {value} is not a uint{bits}")


def validate(data: bytes | str) -> LinuxSeccomp:
    """Decode ``data`` as an OCI LinuxSeccomp or raise :class:`SeccompInvalid` naming the problem."""
    try:
        profile = msgspec.json.decode(data, type=LinuxSeccomp)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SeccompInvalid(str(exc)) from exc
    _check_uint("defaultErrnoRet", profile.default_errno_ret, 32)
    for i, rule in enumerate(profile.syscalls):
        if not rule.names or any(not n for n in rule.names):
            raise SeccompInvalid(f"syscalls[{i}].names: must hold at least one non-empty name")
        _check_uint(f"syscalls[{i}].errnoRet", rule.errno_ret, 32)
        for j, arg in enumerate(rule.args):
            _check_uint(f"syscalls[{i}].args[{j}].index", arg.index, 32)
            _check_uint(f"syscalls[{i}].args[{j}].value", arg.value, 64)
            _check_uint(f"syscalls[{i}].args[{j}].valueTwo", arg.value_two, 64)
    return profile


def profile_of(model: BehaviourModel, arch: str = "x86_64", complain: bool = False) -> LinuxSeccomp:
    """The allow-list profile: one ``SCMP_ACT_ALLOW`` group per coverage level, most covered first.
    ``complain``: the default action is ``SCMP_ACT_LOG`` (what is not listed runs and is logged)."""
    groups: dict[int, list[str]] = {}
    for rule in model.syscalls:
        groups.setdefault(rule.coverage, []).append(rule.name)
    rules = [LinuxSyscall(names=sorted(groups[cov]), action="SCMP_ACT_ALLOW") for cov in sorted(groups, reverse=True)]
    return LinuxSeccomp(
        default_action="SCMP_ACT_LOG" if complain else "SCMP_ACT_ERRNO",
        default_errno_ret=None if complain else EPERM,
        architectures=ARCHITECTURES.get(arch, []),  # type: ignore[arg-type]
        syscalls=rules,
    )


def render(model: BehaviourModel, arch: str = "x86_64", complain: bool = False) -> str:
    """The profile as stable, indented JSON text (ends with a newline)."""
    raw = msgspec.json.encode(profile_of(model, arch, complain))
    return json.dumps(json.loads(raw), indent=2, sort_keys=True) + "\n"
