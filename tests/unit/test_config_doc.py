"""docs/configuration.md is generated from the settings code and must not go stale."""

from __future__ import annotations

from services.runtime import settings_doc
from services.runtime.settings import env_name, load_settings, schema


def test_committed_configuration_doc_is_current() -> None:
    assert settings_doc.DOC_PATH.read_text() == settings_doc.render(), (
        "docs/configuration.md is stale: run `python -m services.runtime.settings_doc`"
    )


def test_every_key_appears_once_with_its_env_name() -> None:
    text = settings_doc.render()
    table = [line for line in text.splitlines() if line.startswith("| `")]
    keys = [key for key, _, _ in schema()]
    assert len(table) == len(keys)
    for key in keys:
        assert sum(1 for row in table if row.startswith(f"| `{key}` |")) == 1
        assert f"`{env_name(key)}`" in text


def test_switches_are_documented_with_the_component_that_honours_them() -> None:
    for key in (
        "runtime_security_config.enabled",
        "runtime_security_config.network.enabled",
        "runtime_security_config.event_types.dns",
        "alert_throttling",
        "decision_intake.enabled",
        "self_test.enabled",
    ):
        assert settings_doc.honoured_by(key), key


def test_documented_env_name_really_switches_the_feature_off() -> None:
    s = load_settings(env={"VIGIL_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED": "false", "VIGIL_ALERT_THROTTLING": "false"})
    assert s.runtime_security_config.network.enabled is False
    assert s.alert_throttling is False


def test_check_mode_reports_a_stale_doc(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(settings_doc.render().replace("`VIGIL_ALERT_THROTTLING`", "`VIGIL_OLD_NAME`"))
    monkeypatch.setattr(settings_doc, "DOC_PATH", stale)
    assert settings_doc.main(["--check"]) == 1
    stale.write_text(settings_doc.render())
    assert settings_doc.main(["--check"]) == 0
