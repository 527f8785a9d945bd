"""Settings: YAML + VIGIL_* overrides, frozen, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from services.runtime.settings import Duration, SettingsError, Size, env_name, load, load_settings, schema


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


@pytest.mark.parametrize(
    "text, size", [("512MiB", 512 << 20), ("8GiB", 8 << 30), ("500MB", 500_000_000), ("4 KiB", 4096), (1000, 1000)]
)
def test_sizes(text: object, size: int) -> None:
    assert Size.parse(text) == size


def test_stream_limits_come_from_yaml_and_env_per_stream(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("streams:\n  events:\n    max_bytes: 2GiB\n  alerts:\n    max_age: 30d\n")
    s = load_settings(cfg, env={"VIGIL_STREAMS_EVENTS_MAX_AGE": "2d"})
    assert (s.streams.events.max_bytes, s.streams.events.max_age) == (2 << 30, 2 * 86400)
    assert s.streams.of("ALERTS").max_age == 30 * 86400
    assert s.streams.of("DEADLETTER").max_age == 7 * 86400  # the default kept
    with pytest.raises(SettingsError) as info:
        load_settings(env={"VIGIL_STREAMS_DRIFT_MAX_BYTES": "lots"})
    assert info.value.key == "streams.drift.max_bytes"
    with pytest.raises(SettingsError) as info:
        load_settings(env={"VIGIL_STORAGE_HEADROOM_WARNING": "2"})
    assert info.value.key == "storage.headroom_warning"
