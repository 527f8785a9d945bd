"""version-evictor core (pure): keep at most ``max_image_tags`` versions per profile.

Input: the learner's profile events. ``VersionFirstSeen.versions`` carries every
version the profile holds at that moment with its last-seen event time, so the
decision needs no history: when a new version pushes the count past
``max_image_tags``, the least recently seen other versions (ties: smaller tag)
are evicted by an EvictVersion command the learner applies (and confirms with
VersionEvicted). Evictions already asked for but not yet confirmed are not
counted again, so two new versions in a row never evict the same tag twice.

The state (versions per profile, pending evictions) only feeds the
``security_profile.versions`` gauge and the pending set; after a restart it
refills from the next VersionFirstSeen of each profile.
"""

from __future__ import annotations

from msgspec import Struct

from contracts.profiles import EvictVersion, ProfileEvent, ProfileReset, VersionEvicted, VersionFirstSeen


class State(Struct, kw_only=True):
    versions: dict[str, dict[str, int]] = {}  # image -> tag -> last seen
    pending: dict[str, list[str]] = {}  # image -> tags asked to evict, not yet confirmed


def handle(state: State, event: ProfileEvent, max_image_tags: int) -> list[EvictVersion]:
    """Fold one profile event; return the evictions it calls for."""
    image = event.image_name
    if isinstance(event, VersionFirstSeen):
        state.versions[image] = dict(event.versions) or {event.image_tag: event.time}
        return _decide(state, event, max_image_tags)
    if isinstance(event, VersionEvicted):
        state.versions.get(image, {}).pop(event.image_tag, None)
        pending = state.pending.get(image, [])
        if event.image_tag in pending:
            pending.remove(event.image_tag)
    elif isinstance(event, ProfileReset):
        if event.image_tag:
            state.versions.get(image, {}).pop(event.image_tag, None)
        else:
            state.versions.pop(image, None)
            state.pending.pop(image, None)
    return []


def _decide(state: State, event: VersionFirstSeen, max_image_tags: int) -> list[EvictVersion]:
    image = event.image_name
    pending = state.pending.setdefault(image, [])
    live = {tag: seen for tag, seen in state.versions[image].items() if tag not in pending}
    excess = len(live) - max_image_tags
    if excess <= 0:
        return []
    candidates = sorted((seen, tag) for tag, seen in live.items() if tag != event.image_tag)
    out = []
    for seen, tag in candidates[:excess]:
        pending.append(tag)
        out.append(
            EvictVersion(id=f"evict:{event.id}:{tag}", time=event.time, image_name=image, image_tag=tag, last_seen=seen)
        )
    return out


def version_counts(state: State) -> dict[str, int]:
    """Versions held per profile, as the learner will after pending evictions."""
    return {
        image: len([t for t in tags if t not in state.pending.get(image, [])]) for image, tags in state.versions.items()
    }
