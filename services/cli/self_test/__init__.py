"""`vigil self-test` proves the pipeline end to end on the running system: it runs a
short-lived test workload (exec, file open, DNS query) in a temporary
directory, gets its activity onto EVENTS — through the kernel collector when
one runs, otherwise through the trace path (the same BatchingPublisher the
collector uses) — and checks that the profile-learner's durable consumer acked
past it, then publishes a test decision (source ``self_test``) and checks that
the archiver acked it (it acks only after the DuckDB commit) and, when the
archiver's query endpoint answers, that the row is there. It prints ``Runtime
self test: OK`` or names every failed check, and exits 0 or 1.

:mod:`.checks` holds the checks, :mod:`.workload` the test workload.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import typer

from services.cli.common import ConfigOpt, fail, load_quietly_or_exit
from services.cli.output import console
from services.cli.self_test.checks import SelfTestReport, run_self_test
from services.cli.self_test.workload import SELF_TEST_IMAGE

__all__ = ["SELF_TEST_IMAGE", "SelfTestReport", "run_self_test", "self_test", "spawn_self_test"]


def self_test(
    path: str = typer.Option("auto", "--path", help="auto | kernel | trace: how the test activity reaches the bus"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for each propagation check"),
    config: Path | None = ConfigOpt,
) -> None:
    """Trigger test activity and check it propagates: collector/trace → bus → learner, decision → archive."""
    settings = load_quietly_or_exit(config).settings
    if path not in ("auto", "kernel", "trace"):
        fail(f"--path must be auto, kernel or trace, got {path!r}", 2)
    report = asyncio.run(run_self_test(settings, path=path, timeout=timeout))
    if report.path:
        console.print(f"activity path: {report.path}")
    for check in report.checks:
        mark = (
            "[green]ok[/green]"
            if check.ok and not check.skipped
            else ("skipped" if check.skipped else "[red]FAILED[/red]")
        )
        console.print(f"  {mark:<8} {check.name}: {check.detail}", highlight=False)
    if report.ok:
        console.print("Runtime self test: OK")
        return
    failed = ", ".join(c.name for c in report.checks if not c.ok)
    console.print(f"Runtime self test: FAILED ({failed})")
    raise typer.Exit(1)


def spawn_self_test(env: dict[str, str], timeout: float = 60.0) -> subprocess.Popen[bytes]:
    """`vigil up`'s hook when ``self_test.enabled``: run the self-test in the background on the
    same bus; it waits (up to ``timeout``) for the services' heartbeats, prints its verdict to
    the terminal and exits. `vigil up` does not restart it."""
    cmd = [sys.executable, "-m", "services.cli.main", "self-test", "--timeout", str(timeout)]
    return subprocess.Popen(cmd, env=env)
