"""Selection of the dedup entries a profile state change flushes (collector/flush.py)."""

from __future__ import annotations

from typing import NamedTuple

from collector.flush import cgroups_of_images, image_to_flush, keys_to_flush
from contracts.codec import encode_json
from contracts.profiles import BehaviourAdded, ProfileReset, StateChanged, VersionEvicted


class Key(NamedTuple):
    cgroup_id: int
    hash: int


IMAGES = {10: "shop/api", 11: "shop/api", 20: "shop/db", 30: None}


def test_state_change_reset_and_eviction_name_their_image() -> None:
    common = {"id": "x", "time": 1, "image_name": "shop/api", "image_tag": "3.1"}
    sc = StateChanged(**common, event_type="open", old_state="learning", new_state="stable")
    assert image_to_flush(encode_json(sc)) == "shop/api"
    assert image_to_flush(encode_json(ProfileReset(**common))) == "shop/api"
    assert image_to_flush(encode_json(VersionEvicted(**common))) == "shop/api"


def test_other_profile_events_and_garbage_flush_nothing() -> None:
    added = BehaviourAdded(id="x", time=1, image_name="shop/api", event_type="open", behaviour="/etc/passwd")
    assert image_to_flush(encode_json(added)) is None
    assert image_to_flush(b'{"kind": "profile.state_changed.v1", "broken"') is None
    assert image_to_flush(b"") is None


def test_only_keys_of_containers_of_the_image_are_selected() -> None:
    keys = [Key(10, 1), Key(10, 2), Key(11, 1), Key(20, 1), Key(30, 1), Key(99, 1)]
    chosen = keys_to_flush(keys, lambda k: k.cgroup_id, IMAGES.get, {"shop/api"})
    assert chosen == [Key(10, 1), Key(10, 2), Key(11, 1)]


def test_each_cgroup_is_resolved_once_and_unknown_cgroups_are_kept() -> None:
    asked: list[int] = []

    def image_of(cg: int) -> str | None:
        asked.append(cg)
        return IMAGES.get(cg)

    assert cgroups_of_images([10, 10, 20, 30, 99, 10], image_of, {"shop/db", "other"}) == {20}
    assert sorted(asked) == [10, 20, 30, 99]
    assert keys_to_flush([Key(30, 1), Key(99, 2)], lambda k: k.cgroup_id, IMAGES.get, {""}) == []
