"""`vigil up`'s process supervision: one child process per service.

Invariants:

- every child writes stdout and stderr to ``<logs>/<name>.log`` (appended); the
  parent closes its copy of the file as soon as the child has it, so restarts
  never accumulate open descriptors in the parent;
- a child that exits is restarted after a back-off: ``initial`` seconds after a
  run shorter than ``stable_after``, doubling with each such run in a row up to
  ``maximum``; a run that lasted ``stable_after`` resets it;
- each child runs in a process group of its own: a terminal's Ctrl-C reaches the
  supervisor alone, which stops the children (SIGTERM, then SIGKILL after
  ``timeout``) before anything they depend on;
- time comes from the ``clock`` given (monotonic seconds), so a test drives the
  back-off without waiting for it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0
    stable_after: float = 30.0

    def delay(self, quick_exits: int) -> float:
        """The wait before a restart, after ``quick_exits`` (>= 1) short runs in a row."""
        return min(self.initial * 2.0 ** (quick_exits - 1), self.maximum)


@dataclass
class Child:
    name: str
    command: Sequence[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # set while waiting out a back-off
    quick_exits: int = 0
    restarts: int = 0


@dataclass
class Supervisor:
    commands: Mapping[str, Sequence[str]]
    env: Mapping[str, str]
    logs: Path
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    say: Callable[[str], None] = print
    children: dict[str, Child] = field(default_factory=dict)

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start_all(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for name, command in self.commands.items():
            self.children[name] = child = Child(name, command)
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        with open(self.log_path(child.name), "ab") as log:  # the child has its own copy once started
            child.proc = subprocess.Popen(
                list(child.command), env=dict(self.env), stdout=log, stderr=log, process_group=0
            )
        child.started_at, child.restart_at = self.clock(), None

    def poll(self) -> None:
        """Notice exited children and restart those whose back-off is over."""
        now = self.clock()
        for child in self.children.values():
            if child.restart_at is None and child.proc is not None and child.proc.poll() is not None:
                ran = now - child.started_at
                child.quick_exits = 0 if ran >= self.backoff.stable_after else child.quick_exits + 1
                wait = self.backoff.delay(max(child.quick_exits, 1))
                child.restart_at = now + wait
                self.say(f"{child.name} exited with {child.proc.returncode}; restarting in {wait:g} s")
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)

    def stop(self, timeout: float = 20.0) -> list[str]:
        """SIGTERM every running child, wait up to ``timeout`` each, kill the rest; returns
        the names of the children that had to be killed."""
        running = [c for c in self.children.values() if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        killed = []
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed.append(child.name)
                child.proc.kill()
                child.proc.wait()
        return killed
