"""Settings: YAML + VIGIL_* overrides, frozen, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from services.runtime.settings import Duration, SettingsError, env_name, load, load_settings, schema


def test_defaults_follow_the_seeds() -> None:
    s = load_settings(env={})
    sp = s.runtime_security_config.security_profile
    assert sp.max_image_tags == 10
    assert sp.anomaly_detection.workload_warmup_period == 180
    assert sp.anomaly_detection.minimum_stable_period.exec == 900
    assert sp.anomaly_detection.unstable_profile_time_threshold == 3600
    assert (s.alert_throttling, s.max_alert_per_sec, s.throttle_sec) == (True, 10, 30)
    assert s.decision_intake.enabled is False


def test_env_overrides_file_and_sources_are_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("max_alert_per_sec: 5\nruntime_security_config:\n  network:\n    enabled: true\n")
    loaded = load(cfg, env={"VIGIL_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED": "false", "VIGIL_THROTTLE_SEC": "60"})
    s = loaded.settings
    assert s.max_alert_per_sec == 5 and s.throttle_sec == 60
    assert s.runtime_security_config.network.enabled is False
    assert loaded.sources["max_alert_per_sec"] == f"file:{cfg}"
    assert (
        loaded.sources["runtime_security_config.network.enabled"] == "env:VIGIL_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED"
    )
    assert loaded.sources["nats.port"] == "default"


def test_settings_are_frozen() -> None:
    s = load_settings(env={})
    with pytest.raises(AttributeError):
        s.max_alert_per_sec = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "env, key",
    [
        ({"VIGIL_NATS_PORT": "abc"}, "nats.port"),
        ({"VIGIL_MAX_ALERT_PER_SEC": "0"}, "max_alert_per_sec"),
        ({"VIGIL_ALERT_THROTTLING": "[1"}, "alert_throttling"),
        ({"VIGIL_COLLECTOR_SOURCE": "carrier-pigeon"}, "collector.source"),
        (
            {"VIGIL_RUNTIME_SECURITY_CONFIG_SECURITY_PROFILE_ANOMALY_DETECTION_WORKLOAD_WARMUP_PERIOD": "soon"},
            "runtime_security_config.security_profile.anomaly_detection.workload_warmup_period",
        ),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env=env)
    assert info.value.key == key
    assert key in str(info.value)


@pytest.mark.parametrize(
    "yaml_text, key",
    [
        ("nats:\n  prot: 1\n", "nats.prot"),
        ("anomaly_detector:\n  suppressions:\n    - {image: a, colour: red}\n", "anomaly_detector.suppressions.colour"),
        ("throttle_sec: []\n", "throttle_sec"),
    ],
)
def test_bad_file_entries_name_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(SettingsError) as info:
        load_settings(cfg, env={})
    assert info.value.key == key


@pytest.mark.parametrize(
    "text, seconds", [("500ms", 0.5), ("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800), (42, 42)]
)
def test_durations(text: object, seconds: float) -> None:
    assert Duration.parse(text) == seconds


def test_every_key_has_an_env_name_that_round_trips() -> None:
    keys = [key for key, _, _ in schema()]
    names = [env_name(k) for k in keys]
    assert len(set(names)) == len(names)
    assert env_name("runtime_security_config.enabled") == "VIGIL_RUNTIME_SECURITY_CONFIG_ENABLED"
    s = load_settings(env={"VIGIL_DATA_DIR": "/tmp/vigil-x", "VIGIL_NATS_URL": "nats://h:1", "VIGIL_NATS_PORT": "-1"})
    assert (s.data_dir, s.nats.url, s.nats.port) == ("/tmp/vigil-x", "nats://h:1", -1)
    assert msgspec.structs.asdict(s)
