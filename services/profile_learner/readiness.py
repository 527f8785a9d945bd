"""Readiness: whether a learned profile version may be enforced by a generator.

Kubescape's node-agent enforced learned seccomp profiles that were still
missing syscalls (kubescape/node-agent #912, #918): a profile is "complete"
only when what it was learned from was complete. The verdict is a list of
checks, each with its reason, over what the learner knows of the version
(its summary: states, last new behaviour, container starts, replicas, drift,
what the kernel side lost), all on event time:

- ``stable``: every event type the generator uses is ``stable`` (or
  ``at_max_size``) — learning found nothing new for ``minimum_stable_period``;
- ``quiet``: nothing new for at least ``readiness.min_quiet``;
- ``starts``: at least ``min_container_starts`` containers were seen starting
  (a container's start-up behaviour — the syscalls of its init — happens once;
  a container already running when Vigil started never showed it);
- ``replicas``: at least ``min_replicas`` distinct containers were observed;
- ``drift``: no drift of those event types in the last ``drift_window``;
- ``loss``: the kernel side lost nothing of its containers that the generator
  depends on (syscalls for seccomp, records for the others).

Pure: the summary and the profile's event time in, the verdict out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from services.runtime.settings import Readiness as Policy

SECOND = 1_000_000_000

# Event types each enforcing generator is built from, and the kind of kernel-side loss that hurts it.
GENERATORS: dict[str, tuple[tuple[str, ...], str]] = {
    "seccomp": (("syscalls",), "syscalls"),
    "apparmor": (("exec", "open", "connect"), "records"),
    "networkpolicy": (("connect", "dns"), "records"),
    "ciliumnetworkpolicy": (("connect", "dns"), "records"),
}
_STABLE = ("stable", "at_max_size")


class Check(NamedTuple):
    name: str
    ok: bool
    detail: str


class Verdict(NamedTuple):
    image_name: str
    image_tag: str
    generator: str
    ready: bool
    checks: list[Check]

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def ago(now: int, then: int) -> str:
    seconds = max(0, now - then) // SECOND
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit} ago"
    return f"{seconds}s ago"


def verdict(image: str, version: Mapping[str, Any], now: int, generator: str, policy: Policy) -> Verdict:
    """The readiness of one version (a profile summary's version) for one generator at event time ``now``."""
    types, loss_kind = GENERATORS[generator]
    checks = [
        _stable(version, types),
        _quiet(version, types, now, policy),
        _count("starts", int(version.get("starts", 0)), policy.min_container_starts, "container starts seen"),
        _count("replicas", int(version.get("replicas", 0)), policy.min_replicas, "containers observed"),
        _drift(version, types, now, policy),
        _loss(version, loss_kind),
    ]
    ready = all(c.ok for c in checks)
    return Verdict(image, str(version.get("image_tag", "")), generator, ready, checks)


def _stable(version: Mapping[str, Any], types: tuple[str, ...]) -> Check:
    states = version.get("states", {})
    detail = ", ".join(f"{et} {states.get(et, '?')}" for et in types)
    return Check("stable", all(states.get(et) in _STABLE for et in types), detail)


def _quiet(version: Mapping[str, Any], types: tuple[str, ...], now: int, policy: Policy) -> Check:
    last = max((int(version.get("last_new", {}).get(et, 0)) for et in types), default=0)
    ok = now - last >= policy.min_quiet.ns
    return Check("quiet", ok, f"last new behaviour {ago(now, last)} (at least {policy.min_quiet:g}s wanted)")


def _count(name: str, have: int, want: int, what: str) -> Check:
    return Check(name, have >= want, f"{what}: {have} (at least {want} wanted)")


def _drift(version: Mapping[str, Any], types: tuple[str, ...], now: int, policy: Policy) -> Check:
    drifts = version.get("drifts", {})
    last = max((int(version.get("last_drift", {}).get(et, 0)) for et in types), default=0)
    total = sum(int(drifts.get(et, 0)) for et in types)
    if not total:
        return Check("drift", True, "no drift")
    recent = now - last < policy.drift_window.ns
    return Check("drift", not recent, f"{total} drifts, the last {ago(now, last)} (window {policy.drift_window:g}s)")


def _loss(version: Mapping[str, Any], kind: str) -> Check:
    lost = int(version.get("lost", {}).get(kind, 0))
    what = "syscalls not recorded" if kind == "syscalls" else "records dropped"
    return Check("loss", lost == 0, f"{lost} {what} by the kernel side" if lost else "nothing lost")
