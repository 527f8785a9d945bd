"""`vigil flare` on a real nats-server: the bundle holds what support needs and
no secret planted in the config, the environment, the logs or the bus."""

from __future__ import annotations

import asyncio
import http.server
import json
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

from contracts.subjects import events_subject
from services.cli.flare import gather_flare
from services.profile_learner.app import ProfileLearner
from services.runtime.bus import publish_one
from services.runtime.settings import Settings, load
from tests.support import open_bus, running, service_env, wait_for

PASSWORD = "S3cretPassw0rd"
OTLP_PASSWORD = "otlpPassw0rd42"
API_TOKEN = "tok-9f8e7d6c5b4a"
OTHER_SECRET = "hunter2-but-longer"
LOG_BEARER = "eyJhbGciOiJIUzI1NiJ9.payload"
SECRETS = (PASSWORD, OTLP_PASSWORD, API_TOKEN, OTHER_SECRET, LOG_BEARER)


def _plant(settings: Settings, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A config file, an environment and a log carrying secrets; a dead letter on the bus."""
    config = tmp_path / "vigil.yaml"
    config.write_text(f"telemetry:\n  otlp_endpoint: https://otel:{OTLP_PASSWORD}@collector.example:4317\n")
    url = settings.nats.url.replace("nats://", f"nats://vigil:{PASSWORD}@")
    env = {
        **service_env(settings),
        "VIGIL_NATS_URL": url,
        "VIGIL_CONFIG": str(config),
        "VIGIL_API_TOKEN": API_TOKEN,
        "DATABASE_PASSWORD": OTHER_SECRET,
    }
    env.pop("VIGIL_TELEMETRY_OTLP_ENDPOINT", None)  # the file's value, with its password, must apply
    logs = settings.data_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "profile-learner.log").write_text(
        f"connected to {url}\nretrying with password={OTHER_SECRET}\nAuthorization: Bearer {LOG_BEARER}\n"
        f"api token {API_TOKEN} in use\nnormal line\n"
    )
    return config, env


async def _dead_letter_with_secret(settings: Settings) -> None:
    async with running(ProfileLearner(settings), settings) as runner:
        bus = await open_bus(settings)
        try:
            await publish_one(bus, events_subject(0), f"garbage token={API_TOKEN}".encode(), "bad-1")
            await wait_for(lambda: runner.app.counters["dead_letters"] >= 1)
            await asyncio.sleep(0)  # heartbeat task already put its first beat
            await wait_for(lambda: _has_heartbeat(bus))
        finally:
            await bus.close()


async def _has_heartbeat(bus) -> bool:  # type: ignore[no-untyped-def]
    from services.runtime.diagnostics import heartbeats

    return bool(await heartbeats(bus))


def _flare_cli(env: dict[str, str], *args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "flare", *args],
        env=env,
        input=answer,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bundle_has_every_section_and_no_planted_secret(settings: Settings, tmp_path: Path) -> None:
    config, env = _plant(settings, tmp_path)
    asyncio.run(_dead_letter_with_secret(settings))
    out = tmp_path / "flare.zip"
    proc = _flare_cli(env, "CASE-42", "--yes", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        texts = {name: zf.read(name).decode() for name in names}
    assert {
        "config.json",
        "environment.json",
        "versions.json",
        "streams.json",
        "consumers.json",
        "heartbeats.json",
        "metrics.json",
        "deadletters.jsonl",
        "MANIFEST.json",
        "logs/profile-learner.log",
    } <= names
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {name}"
    assert json.loads(texts["MANIFEST.json"])["case_id"] == "CASE-42"
    assert "EVENTS" in {s["stream"] for s in json.loads(texts["streams.json"])}
    assert any(c["consumer"].startswith("profile-learner-p") for c in json.loads(texts["consumers.json"]))
    letters = [json.loads(line) for line in texts["deadletters.jsonl"].splitlines()]
    assert letters and letters[-1]["service"] == "profile-learner" and "garbage" in letters[-1]["payload"]
    assert "normal line" in texts["logs/profile-learner.log"]  # redaction keeps the rest of the log
    assert "collector.example:4317" in texts["config.json"]
    assert json.loads(texts["environment.json"])["VIGIL_API_TOKEN"] == "********"
    versions = json.loads(texts["versions.json"])
    assert versions["nats_server"] and versions["python"] and "msgspec" in versions["packages"]


def test_flare_lists_contents_and_writes_nothing_when_declined(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "declined.zip"
    proc = _flare_cli(service_env(settings), "--out", str(out), answer="n\n")
    assert proc.returncode == 1
    assert "config.json" in proc.stdout and "Proceed?" in proc.stdout
    assert not out.exists()
    proc = _flare_cli(service_env(settings), "--out", str(out), answer="y\n")
    assert proc.returncode == 0 and out.exists()


def test_flare_without_a_bus_still_writes_config_and_the_error(tmp_path: Path) -> None:
    from tests.support import make_settings

    settings = make_settings(tmp_path / "v", "nats://127.0.0.1:1")
    files = asyncio.run(
        gather_flare(load(env={"VIGIL_DATA_DIR": settings.data_dir, "VIGIL_NATS_URL": settings.nats.url}), None)
    )
    assert "bus-error.txt" in files and "config.json" in files and "streams.json" not in files


def test_send_posts_the_zip_with_the_case_id(settings: Settings, tmp_path: Path) -> None:
    received: dict[str, object] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.update(path=self.path, case=self.headers["X-Vigil-Case-Id"], body=body)
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/upload"
        proc = _flare_cli(service_env(settings), "CASE-7", "--yes", "--send", url, "--out", str(tmp_path / "f.zip"))
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "HTTP 201" in proc.stdout
    assert received["case"] == "CASE-7" and received["path"] == "/upload?case_id=CASE-7"
    assert received["body"] == (tmp_path / "f.zip").read_bytes()
