"""`vigil up`'s supervision (services/runtime/supervisor.py) with real child
processes and a clock the test moves: an exiting child is restarted after a
back-off that doubles while it keeps exiting quickly and resets after a stable
run; restarts leave no log file open in the parent; stop ends every child."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from services.runtime.supervisor import Backoff, Supervisor

EXIT_AT_ONCE = [sys.executable, "-c", "print('bye'); raise SystemExit(3)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _open_in_parent(path: Path) -> int:
    """How many of this process's descriptors are open on ``path`` (other tests'
    threads open and close descriptors of their own: count only this file's)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:  # closed meanwhile
            pass
    return count


def _exit_and_restart(sup: Supervisor, clock: Clock, name: str) -> float:
    """Wait for the child to exit, let the supervisor notice, then move the clock
    past the back-off it chose and let it restart; returns the back-off."""
    child = sup.children[name]
    assert child.proc is not None
    child.proc.wait(30)
    sup.poll()
    assert child.restart_at is not None
    wait = child.restart_at - clock.now
    sup.poll()  # not yet due
    assert child.restart_at is not None
    clock.now = child.restart_at
    sup.poll()
    assert child.restart_at is None
    return wait


def test_a_quickly_exiting_child_is_restarted_with_a_doubling_backoff_and_no_leaked_log(tmp_path: Path) -> None:
    clock, said = Clock(), []
    backoff = Backoff(initial=1.0, maximum=4.0, stable_after=30.0)
    sup = Supervisor({"flaky": EXIT_AT_ONCE}, {}, tmp_path / "logs", backoff=backoff, clock=clock, say=said.append)
    sup.start_all()
    log = tmp_path / "logs" / "flaky.log"
    assert _open_in_parent(log) == 0  # handed to the child, closed here
    waits = [_exit_and_restart(sup, clock, "flaky") for _ in range(5)]
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert sup.children["flaky"].restarts == 5
    assert _open_in_parent(log) == 0  # each restart's log file was closed in the parent
    assert (tmp_path / "logs" / "flaky.log").read_text().count("bye") >= 5  # appended, not truncated
    assert said[0] == "flaky exited with 3; restarting in 1 s"
    sup.stop()


def test_a_stable_run_resets_the_backoff(tmp_path: Path) -> None:
    clock = Clock()
    sup = Supervisor({"flaky": EXIT_AT_ONCE}, {}, tmp_path, backoff=Backoff(1.0, 60.0, 30.0), clock=clock, say=str)
    sup.start_all()
    assert [_exit_and_restart(sup, clock, "flaky") for _ in range(3)] == [1.0, 2.0, 4.0]
    clock.now += 31  # this run counts as stable when its exit is noticed
    assert _exit_and_restart(sup, clock, "flaky") == 1.0
    sup.stop()


def test_stop_terminates_every_child(tmp_path: Path) -> None:
    sup = Supervisor({"a": SLEEP, "b": SLEEP}, {}, tmp_path, say=str)
    sup.start_all()
    assert sup.stop(timeout=30) == []
    assert all(c.proc is not None and c.proc.returncode is not None for c in sup.children.values())
