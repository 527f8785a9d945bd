"""Which in-kernel dedup entries to forget when a profile changes state.

The kernel's ``dedup`` map is keyed on (cgroup id, behaviour hash). When a
version of image X changes state (``StateChanged``, and ``ProfileReset`` /
``VersionEvicted``, which also start that profile's knowledge over), the
behaviour of X's containers must reach the learner and the detector again, so
every entry whose cgroup belongs to a container of image X is deleted.
Containers of other images keep their entries (their repeats stay
suppressed).

Invariants:
- the functions here are pure: the caller supplies the keys and a
  cgroup -> image resolver (the enricher's identity cache);
- a cgroup whose image cannot be resolved (host, unknown container) is not
  image X and keeps its entries: behaviour of an unknown container belongs to
  no profile yet, and naming it later forgets its cgroups' entries anyway;
- only the image *name* is compared (the profile key); every tag's
  containers are flushed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from contracts.codec import ContractError, decode_json
from contracts.profiles import ProfileReset, StateChanged, VersionEvicted

K = TypeVar("K", bound=Hashable)

FLUSH_ON = (StateChanged, ProfileReset, VersionEvicted)
# Cheap pre-filter on the raw JSON: most PROFILES messages are BehaviourAdded,
# which are never decoded here.
_MARKERS = (b'"profile.state_changed.', b'"profile.reset.', b'"profile.version_evicted.')


def image_to_flush(data: bytes) -> str | None:
    """The image name whose containers' dedup entries must go, or None."""
    if not any(m in data for m in _MARKERS):
        return None
    try:
        event = decode_json("profile_event", data)
    except ContractError:
        return None
    if isinstance(event, FLUSH_ON) and event.image_name:
        return event.image_name
    return None


def cgroups_of_images(cgroup_ids: Iterable[int], image_of: Callable[[int], str | None], images: set[str]) -> set[int]:
    """The cgroups (among ``cgroup_ids``) whose container runs one of ``images``."""
    out: set[int] = set()
    for cg in set(cgroup_ids):
        image = image_of(cg)
        if image and image in images:
            out.add(cg)
    return out


def keys_to_flush(
    keys: Iterable[K], cgroup_of: Callable[[K], int], image_of: Callable[[int], str | None], images: set[str]
) -> list[K]:
    """The dedup keys to delete: those whose cgroup runs one of ``images``."""
    keys = list(keys)
    chosen = cgroups_of_images((cgroup_of(k) for k in keys), image_of, images)
    return [k for k in keys if cgroup_of(k) in chosen]
