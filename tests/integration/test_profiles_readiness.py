"""Readiness through the running product: the learner in-process on a real nats-server,
`vigil profiles readiness` and `vigil profiles export` as subprocesses. A version still
learning is refused for enforcement (its reasons said), can always be exported in complain
mode or with --force; once stable it exports; a kernel-side loss of its syscalls makes it
unready for seccomp again, not for AppArmor."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from contracts.events import EventsLost
from contracts.profiles import BehaviourAdded
from services.profile_learner.app import ProfileLearner
from services.profile_learner.sim import _ctr, ns, tick
from services.runtime.settings import Settings
from tests.integration.test_profiles_portable import ENV, publish, until, web
from tests.support import make_settings, run_vigil, running, wait_for


async def vigil(settings: Settings, *args: str) -> Any:
    """`vigil ARGS…` in a thread, so the in-process learner keeps answering queries."""
    return await asyncio.to_thread(run_vigil, settings, *args, COLUMNS="200")


async def verdicts(settings: Settings, generator: str) -> tuple[int, dict[str, Any]]:
    done = await vigil(settings, "profiles", "readiness", "web:v1", "-g", generator, "-o", "json")
    [line] = done.stdout.splitlines()
    return done.returncode, json.loads(line)


def failing(verdict: dict[str, Any]) -> set[str]:
    return {c["name"] for c in verdict["checks"] if not c["ok"]}


def test_an_unready_version_is_refused_for_enforcement_until_it_is_ready(settings: Settings) -> None:
    asyncio.run(_readiness(make_settings(settings.data_path, settings.nats.url, **ENV)))


async def _readiness(settings: Settings) -> None:
    learner = ProfileLearner(settings)
    async with running(learner, settings):
        learning = web()[:-1]  # everything but the tick that makes it stable
        await publish(settings, learning, "boot-1")
        await until(settings, BehaviourAdded, 8)

        code, verdict = await verdicts(settings, "seccomp")
        assert code == 1 and not verdict["ready"] and failing(verdict) == {"stable"}, verdict
        refused = await vigil(settings, "profiles", "export", "web:v1", "--format", "seccomp")
        assert refused.returncode == 1 and refused.stdout == ""
        assert "not ready for seccomp" in refused.stderr and "stable: syscalls" in refused.stderr
        complain = await vigil(settings, "profiles", "export", "web:v1", "--format", "seccomp", "--mode", "complain")
        assert complain.returncode == 0, complain.stderr
        assert json.loads(complain.stdout)["defaultAction"] == "SCMP_ACT_LOG"
        aa = await vigil(settings, "profiles", "export", "web:v1", "--format", "apparmor", "--mode", "complain")
        assert aa.returncode == 0 and "complain)" in aa.stdout, aa.stderr
        forced = await vigil(settings, "profiles", "export", "web:v1", "--format", "seccomp", "--force")
        assert forced.returncode == 0 and "exported (--force)" in forced.stderr
        assert json.loads(forced.stdout)["defaultAction"] == "SCMP_ACT_ERRNO"

        await publish(settings, [tick(20)], "boot-2")  # 10 s with nothing new: stable
        await wait_for(lambda: verdicts_ready(settings, "seccomp"), timeout=30)
        enforced = await vigil(settings, "profiles", "export", "web:v1", "--format", "seccomp")
        assert enforced.returncode == 0 and json.loads(enforced.stdout)["defaultAction"] == "SCMP_ACT_ERRNO"

        lost = EventsLost(time=ns(21), node="n1", container=_ctr("web", "v1", "c1"), syscalls=3)
        await publish(settings, [lost], "boot-3")
        await wait_for(lambda: verdicts_loss(settings), timeout=30)
        code, verdict = await verdicts(settings, "apparmor")
        assert code == 0 and verdict["ready"], verdict  # syscalls lost: AppArmor is not built from them


async def verdicts_ready(settings: Settings, generator: str) -> bool:
    code, verdict = await verdicts(settings, generator)
    return code == 0 and verdict["ready"]


async def verdicts_loss(settings: Settings) -> bool:
    code, verdict = await verdicts(settings, "seccomp")
    return code == 1 and failing(verdict) == {"loss"}
