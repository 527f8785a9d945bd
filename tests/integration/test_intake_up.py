"""`vigil up` starts the intake sidecar when `decision_intake.enabled` or
`decision_intake.gatekeeper_dir` is set (it is off unless configured): lines sent
to its socket are answered after JetStream stored them and reach the archive, so
do the violations Gatekeeper's disk driver writes into the followed directory;
Ctrl-C stops it with the rest."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from contracts.intake import Accepted, normalise
from services.decision_intake.client import GatekeeperDisk, export_line, gatekeeper_line, send_lines
from tests.integration.test_cli_up import wait


def _archived(env: dict[str, str], ids: list[str]) -> bool:
    listed = ", ".join(f"'{i}'" for i in ids)
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "decisions", "sql", "-o", "json",
         f"SELECT id FROM decisions WHERE id IN ({listed}) ORDER BY id"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return proc.returncode == 0 and [json.loads(line)["id"] for line in proc.stdout.splitlines()] == sorted(ids)


def test_up_starts_the_intake_when_configured(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {
        "VIGIL_DATA_DIR": str(data),
        "VIGIL_NATS_PORT": "-1",
        "VIGIL_DECISION_INTAKE_ENABLED": "true",
        "VIGIL_DECISION_INTAKE_GATEKEEPER_DIR": str(tmp_path / "violations" / "topics"),
        "VIGIL_RUNTIME_SECURITY_CONFIG_ENABLED": "false",  # no collector: this test is about the intake
    }
    sock = data / "intake.sock"
    up_log = tmp_path / "up.log"
    with open(up_log, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "services.cli.main", "up"], env=env, stdout=log, stderr=log)
    try:
        wait(lambda: sock.is_socket())
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert "decision-intake" in up_log.read_text()
        lines = [gatekeeper_line(i, prefix="up") for i in range(3)]
        answers = asyncio.run(send_lines(sock, lines))
        ids = [f"up-{i:08d}" for i in range(3)]
        assert [a.get("id") for a in answers] == ids and all(a["ok"] for a in answers)
        wait(lambda: _archived(env, ids))
        disk = GatekeeperDisk(tmp_path / "violations" / "topics")  # Gatekeeper's audit, on the shared volume
        disk.start("2026-01-10T08:00:00Z")
        lines = [export_line(i, "2026-01-10T08:00:00Z") for i in range(3)]
        for line in lines:
            disk.write(line)
        disk.complete()
        exported = [r.message.id for r in map(normalise, lines) if isinstance(r, Accepted)]
        wait(lambda: _archived(env, exported))
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
    assert code == 0, up_log.read_text()[-3000:]
    assert "stopped." in up_log.read_text()
    assert not sock.exists()  # the intake removed its socket on SIGTERM
    assert (data / "logs" / "decision-intake.log").exists()
