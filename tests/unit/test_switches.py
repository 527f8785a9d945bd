"""The switches of the Workload Protection doc turn the matching parts off."""

from __future__ import annotations

from collector.main import collector_available
from services.profile_learner.app import core_config
from services.runtime.settings import load_settings


def test_runtime_security_off_starts_no_collector_and_learns_nothing() -> None:
    settings = load_settings(
        env={"VIGIL_RUNTIME_SECURITY_CONFIG_ENABLED": "false", "VIGIL_COLLECTOR_SOURCE": "synthetic"}
    )
    ok, why = collector_available(settings)
    assert not ok and "runtime_security_config.enabled" in why
    assert core_config(settings).event_types == ()


def test_one_event_type_off() -> None:
    settings = load_settings(env={"VIGIL_RUNTIME_SECURITY_CONFIG_EVENT_TYPES_SYSCALLS": "false"})
    assert "syscalls" not in core_config(settings).event_types
    assert "exec" in core_config(settings).event_types
