"""From a learned profile to enforcement, on a real podman container (runc):

1. learn: a workload runs in a podman container; the collector (tests/kernel/conftest.py)
   names it from podman's own state and reports its syscall set; the learner's core folds
   the events, and the version is judged ready for seccomp (stable, a start seen, nothing
   lost, no drift);
2. enforce: the generated profile (SCMP_ACT_ERRNO by default) runs the same workload with
   the same output, and a variant making a syscall the workload never made (kill) fails
   with EPERM;
3. complain: the complain-mode profile (SCMP_ACT_LOG) lets the variant run, and Vigil
   reports the new syscall as drift of the stable version.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from contracts.events import ContainerStopped, RawEvent, SyscallsObserved
from contracts.profiles import SetState
from services.audit_report_writer import model_files, modeling
from services.profile_learner import core
from services.profile_learner.readiness import verdict
from services.runtime.settings import Readiness
from tests.kernel.conftest import KernelEnv, of
from tests.kernel.runtimes import PODMAN_RUN, demo_image, missing
from tests.sim import Sim

pytestmark = pytest.mark.kernel

IMAGE, TAG = "localhost/vigil-test-seccomp", "1.0"
WORKLOAD = "cat /etc/passwd; ls /www; echo done"  # (/etc/hostname is the container id: differs per run)
VARIANT = "cat /etc/passwd; sleep 2; kill -0 1 && echo signalled"  # kill: a syscall the workload never made


def run(
    tmp_path: Path, name: str, script: str, profile: Path | None = None
) -> tuple[str, subprocess.CompletedProcess[str]]:
    cidfile = tmp_path / f"{name}.cid"
    opts = ["--security-opt", f"seccomp={profile}"] if profile else []
    proc = subprocess.run(
        [*PODMAN_RUN, "--rm", "--cidfile", str(cidfile), *opts, f"{IMAGE}:{TAG}", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return cidfile.read_text().strip(), proc


def container_events(env: KernelEnv, cid: str) -> list[RawEvent]:
    """Everything of the container once it stopped (its last syscall sets are drained before its stop)."""
    env.wait_events(lambda es: any(isinstance(e, ContainerStopped) for e in es), of(cid))
    time.sleep(0.5)  # the drain timer (0.2 s here) for processes that exited before the stop
    return sorted(env.events(of(cid)), key=lambda e: e.time)


def test_a_learned_podman_profile_is_ready_enforced_and_complains(kernel_env: KernelEnv, tmp_path: Path) -> None:
    if reason := missing("podman", "runc"):
        pytest.fail(reason)
    demo_image("podman", f"{IMAGE}:{TAG}")
    cfg = core.config(stable=3600, warmup_period=core.SECOND, unstable_time=10 * 3600 * core.SECOND)
    sim = Sim(cfg)

    # 1. learn
    cid, learned_run = run(tmp_path, "learn", WORKLOAD)
    assert learned_run.returncode == 0, learned_run.stderr
    events = container_events(kernel_env, cid)
    assert {(e.container.image_name, e.container.image_tag) for e in events} == {(IMAGE, TAG)}  # type: ignore[attr-defined]
    assert any(isinstance(e, SyscallsObserved) for e in events)
    sim.feed(*events)
    sim.command(SetState(id="operator", image_name=IMAGE, image_tag=TAG, state="stable"))
    prof = sim.state.profiles[IMAGE]
    [version] = core.summary(prof)["versions"]
    ready = verdict(IMAGE, version, prof.now, "seccomp", Readiness())
    assert ready.ready, ready.failed()

    model = modeling.model_of_learned(modeling.learned_behaviour(sim.events), IMAGE, TAG)
    allowed = {s.name for s in model.syscalls}
    assert {"execve", "openat", "getdents64", "exit_group"} <= allowed
    assert "kill" not in allowed, "the variant's syscall was learned: pick another for this test"
    enforce, complain = tmp_path / "enforce.json", tmp_path / "complain.json"
    enforce.write_text(model_files.render(model, "seccomp"))
    complain.write_text(model_files.render(model, "seccomp", complain=True))

    # 2. enforce
    _, same = run(tmp_path, "enforce", WORKLOAD, enforce)
    assert same.returncode == 0, same.stderr
    assert same.stdout == learned_run.stdout
    _, denied = run(tmp_path, "denied", VARIANT, enforce)
    assert denied.returncode != 0 and "Operation not permitted" in denied.stderr, (denied.stdout, denied.stderr)
    assert "signalled" not in denied.stdout

    # 3. complain: it runs, and the new syscall is drift of the stable version
    cid, logged = run(tmp_path, "complain", VARIANT, complain)
    assert logged.returncode == 0 and "signalled" in logged.stdout, logged.stderr
    drifts = sim.feed(*container_events(kernel_env, cid))
    assert [(d.event_type, d.behaviour, d.version_state) for d in drifts if d.behaviour == "kill"] == [
        ("syscalls", "kill", "stable")
    ]
