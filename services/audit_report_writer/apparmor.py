"""AppArmor profile text from a behaviour model (pure).

Shape follows vArmor's generated profiles (seed: varmor-behavior-modeling):
``abi <abi/3.0>``, ``#include <tunables/global>``, one profile with
``flags=(attach_disconnected,mediate_deleted)`` including
``<abstractions/base>``, then sections EXEC (``ix``), FILE, CAPABILITY,
NETWORK, PTRACE and SIGNAL (peer rules so ``ps``/``docker ps`` and
signals between the container's processes keep working).

AppArmor is deny by default: whatever no rule allows is refused. Decisions:

- write/append rules carry ``owner`` (the process must own the file it
  writes); read/map rules do not (system files are owned by root, workloads
  often are not);
- capabilities are granted only when the model knows them; on this kernel it
  does not, and the profile says so in a comment;
- AppArmor 3 cannot filter network by address, so egress becomes
  ``network <family> <type>`` rules and the addresses are listed as comments;
- a rule that only some replicas showed ends with ``# coverage k/n``.

Invariant: the text is a function of the model only (sorted, stable).
"""

from __future__ import annotations

import re

from contracts.models import BehaviourModel, Coverage

HEADER = "## == Managed by Vigil == ##"
_PLAIN = re.compile(r"^[A-Za-z0-9/._\-*+@~:,=]+$")


def quote_path(path: str) -> str:
    """A path as an AppArmor token: bare when safe, else double-quoted with escapes."""
    if _PLAIN.match(path):
        return path
    escaped = path.replace("\\", "\\\\").replace('"', '\\"')
    for ch in "?[]{}":
        escaped = escaped.replace(ch, "\\" + ch)
    return f'"{escaped}"'


def _coverage(rule: Coverage, replicas: int) -> str:
    return f"  # coverage {rule.coverage}/{replicas}" if replicas > 1 and rule.coverage < replicas else ""


def _exec_section(model: BehaviourModel) -> list[str]:
    return [f"  {quote_path(r.path)} ix,{_coverage(r, model.replicas)}" for r in model.executions]


def _file_section(model: BehaviourModel) -> list[str]:
    lines = []
    for rule in model.files:
        perms = rule.perms.replace("ix", "")
        if not perms:
            continue
        owner = "owner " if ("w" in perms or "a" in perms) else ""
        lines.append(f"  {owner}{quote_path(rule.path)} {perms},{_coverage(rule, model.replicas)}")
    return lines


def _capability_section(model: BehaviourModel) -> list[str]:
    caps = model.capabilities
    if not caps.known:
        return [f"  ## unknown: {caps.reason}"]
    names = sorted({name.lower().removeprefix("cap_") for name in caps.names})
    return [f"  capability {name}," for name in names] or ["  ## none observed: no capability granted"]


def _network_section(model: BehaviourModel) -> list[str]:
    net = model.network
    lines = [f"  network {sock}," for sock in net.sockets]
    lines += [f"  ## egress {r.proto} {r.addr}:{r.port}{_coverage(r, model.replicas)}" for r in net.egress]
    lines += [f"  ## dns {r.name}{_coverage(r, model.replicas)}" for r in net.dns]
    return lines or ["  ## none observed: no network access"]


def _peer_sections(name: str) -> list[str]:
    return [
        "  # ---- PTRACE ----",
        "  ## suppress ptrace denials when using 'docker ps' or using 'ps' inside a container",
        f"  ptrace (trace,read,tracedby,readby) peer={name},",
        "",
        "  # ---- SIGNAL ----",
        "  ## host (privileged) processes may send signals to container processes.",
        "  signal (receive) peer=unconfined,",
        "  ## container processes may send signals amongst themselves.",
        f"  signal (send,receive) peer={name},",
    ]


def render(model: BehaviourModel, complain: bool = False) -> str:
    """The profile text (ends with a newline); ``complain``: AppArmor's complain mode
    (what the profile does not allow is logged, not denied)."""
    flags = "attach_disconnected,mediate_deleted" + (",complain" if complain else "")
    name = model.profile_name
    tag = model.image_tag or "*"
    lines = [
        HEADER,
        f"## image {model.image_name}:{tag}, source {model.source or 'model'}, replicas {model.replicas}",
        "## complain mode: what the model did not observe is logged, not denied"
        if complain
        else "## deny by default: only what the model observed is allowed",
        "abi <abi/3.0>,",
        "#include <tunables/global>",
        "",
        f"profile {name} flags=({flags}) {{",
        "  #include <abstractions/base>",
        "",
        "  # ---- EXEC ----",
        *_exec_section(model),
        "",
        "  # ---- FILE ----",
        *_file_section(model),
        "",
        "  # ---- CAPABILITY ----",
        *_capability_section(model),
        "",
        "  # ---- NETWORK ----",
        *_network_section(model),
        "",
        *_peer_sections(name),
        "}",
    ]
    return "\n".join(lines) + "\n"
