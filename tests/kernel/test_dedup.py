"""In-kernel dedup: 100k opens over 100 paths in one container reach user space
as at most 1% of the events, and every distinct (container, path, flags) at least once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contracts.events import FileOpened
from tests.kernel.conftest import KernelEnv, container_cgroup, which

pytestmark = pytest.mark.kernel

LOOP = """
import os, sys
paths = [os.path.join(sys.argv[1], f"f{i}") for i in range(100)]
for _ in range(1000):
    for p in paths:
        os.close(os.open(p, os.O_RDONLY))
"""


def test_100k_opens_deliver_at_most_1_percent(kernel_env: KernelEnv, tmp_path: Path) -> None:
    for i in range(100):
        (tmp_path / f"f{i}").write_text("x")
    wanted = {str(tmp_path / f"f{i}") for i in range(100)}
    before = kernel_env.collector.probe.counters()
    with container_cgroup(kernel_env, "vigil-test/dedup") as c:
        out = c.run(which("python3"), "-c", LOOP, str(tmp_path))
        assert out.returncode == 0, out.stderr
    opened = kernel_env.wait_events(
        lambda es: wanted <= {e.file.path for e in es},
        lambda e: isinstance(e, FileOpened) and e.container.id == c.id,
    )
    after = kernel_env.collector.probe.counters()
    assert len(opened) <= 1000, f"{len(opened)} open events delivered for 100k opens"
    flags = {(e.file.path, e.file.flags) for e in opened if e.file.path in wanted}
    assert {p for p, _ in flags} == wanted
    assert all(f & os.O_ACCMODE == os.O_RDONLY for _, f in flags)
    assert after["dedup_hits"] - before["dedup_hits"] >= 99_000
    assert after["dropped"] == before["dropped"]
