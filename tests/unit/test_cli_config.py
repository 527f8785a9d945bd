"""`vigil config show`: every key with its value and source, in both formats."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from services.cli.main import app
from services.runtime.settings import schema


def test_config_show_json_lists_every_key_with_source(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIGIL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VIGIL_THROTTLE_SEC", "45")
    result = CliRunner().invoke(app, ["config", "show", "-o", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["key"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {key for key, _, _ in schema()}
    assert rows["throttle_sec"] == {
        "key": "throttle_sec",
        "value": 45,
        "source": "env:VIGIL_THROTTLE_SEC",
        "env": "VIGIL_THROTTLE_SEC",
        "type": "int",
    }
    warmup = rows["runtime_security_config.security_profile.anomaly_detection.workload_warmup_period"]
    assert (warmup["value"], warmup["source"], warmup["type"]) == (180.0, "default", "duration")


def test_config_show_table_and_bad_value(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIGIL_DATA_DIR", str(tmp_path))
    assert "max_alert_per_sec" in CliRunner().invoke(app, ["config", "show"]).stdout
    monkeypatch.setenv("VIGIL_NATS_PARTITIONS", "-3")
    bad = CliRunner().invoke(app, ["config", "show"])
    assert bad.exit_code == 2
    assert "nats.partitions" in bad.output
