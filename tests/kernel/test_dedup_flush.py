"""A profile state change flushes the in-kernel dedup entries of that image's
containers only: their repeated opens are delivered again, while a container
of another image keeps its repeats suppressed."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from contracts.codec import encode_json
from contracts.events import FileOpened
from contracts.profiles import StateChanged
from contracts.subjects import profiles_subject
from services.runtime.bus import publish_one
from tests.kernel.conftest import CgroupContainer, KernelEnv, container_cgroup, which
from tests.support import open_bus

pytestmark = pytest.mark.kernel

LOOP = """
import os, sys
for _ in range(20):
    for name in sys.argv[2:]:
        os.close(os.open(os.path.join(sys.argv[1], name), os.O_RDONLY | os.O_CREAT, 0o644))
"""
NAMES = [f"p{i}" for i in range(10)]


def _opens(c: CgroupContainer, folder: Path, *names: str) -> None:
    out = c.run(which("python3"), "-c", LOOP, str(folder), *names)
    assert out.returncode == 0, out.stderr


def _counts(env: KernelEnv, c: CgroupContainer, paths: set[str]) -> Counter[str]:
    return Counter(
        e.file.path
        for e in env.events(lambda e: isinstance(e, FileOpened) and e.container.id == c.id)
        if e.file.path in paths
    )


def _wait(what: str, predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not seen within {timeout}s: {what}"
        time.sleep(0.1)


def _publish_state_change(env: KernelEnv, image: str) -> None:
    event = StateChanged(
        id=f"test-flush-{image}-{time.time_ns()}",
        time=time.time_ns(),
        image_name=image,
        image_tag="1.0",
        event_type="open",
        old_state="learning",
        new_state="stable",
        reason="stable_period",
    )

    async def go() -> None:
        bus = await open_bus(env.settings)
        try:
            await publish_one(bus, profiles_subject(image), encode_json(event), event.id)
        finally:
            await bus.close()

    asyncio.run(go())


def test_state_change_flushes_only_that_images_containers(kernel_env: KernelEnv, tmp_path: Path) -> None:
    env, col = kernel_env, kernel_env.collector
    fa, fb = tmp_path / "a", tmp_path / "b"
    fa.mkdir()
    fb.mkdir()
    paths_a = {str(fa / n) for n in NAMES}
    paths_b = {str(fb / n) for n in NAMES}
    with (
        container_cgroup(env, "vigil-test/flush-a") as a,
        container_cgroup(env, "vigil-test/flush-b") as b,
    ):
        # Repeats are deduped: 20 opens of each path reach the bus once.
        _opens(a, fa, *NAMES)
        _opens(b, fb, *NAMES)
        _wait(
            "first opens of a and b",
            lambda: set(_counts(env, a, paths_a)) == paths_a and set(_counts(env, b, paths_b)) == paths_b,
        )
        assert set(_counts(env, a, paths_a).values()) == {1}
        assert set(_counts(env, b, paths_b).values()) == {1}

        flushes = col.dedup_image_flushes
        whole = col.dedup_flushes
        _publish_state_change(env, "vigil-test/flush-a")
        _wait("the targeted flush", lambda: col.dedup_image_flushes > flushes)
        assert col.dedup_flushes == whole, "a state change must not clear the whole map"
        assert col.counters()["dedup_flushed_entries"] >= len(NAMES)

        _opens(a, fa, *NAMES)
        _opens(b, fb, *NAMES)
        marker = str(fb / "marker")
        _opens(b, fb, "marker")  # after b's repeats, in kernel order
        _wait("a's opens delivered again", lambda: set(_counts(env, a, paths_a).values()) == {2})
        _wait("b's marker", lambda: marker in _counts(env, b, paths_b | {marker}))
        b_counts = _counts(env, b, paths_b)
        assert set(b_counts.values()) == {1}, f"image b was flushed too: {b_counts}"
