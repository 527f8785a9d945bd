"""`vigil flare` gathers a diagnostic bundle (effective config with secrets redacted,
versions, log tails, streams and consumers, heartbeats, a metrics snapshot,
recent dead letters), lists it, and asks before writing or sending it."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import typer

from services.cli.common import ConfigOpt, fail, load_quietly_or_exit
from services.cli.output import console
from services.runtime.settings import Loaded, Settings


def flare(
    case_id: str | None = typer.Argument(None, help="support case id (goes in the file name and the upload)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation (scripts)"),
    send: str | None = typer.Option(None, "--send", help="also POST the bundle to this URL"),
    out: Path | None = typer.Option(None, "--out", help="zip path (default: <data_dir>/flares/…)"),
    log_bytes: int = typer.Option(256 * 1024, "--log-bytes", help="tail of each log file to include"),
    config: Path | None = ConfigOpt,
) -> None:
    """Diagnostic bundle for support: config (secrets redacted), versions, logs, bus state, heartbeats, dead letters."""
    loaded = load_quietly_or_exit(config)
    files = asyncio.run(gather_flare(loaded, case_id, log_bytes))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = out or loaded.settings.data_path / "flares" / f"vigil-flare-{case_id or 'nocase'}-{stamp}.zip"
    console.print(f"The flare will contain {len(files)} files:")
    for name, text in files.items():
        console.print(f"  {name:<32} {len(text.encode()):>9} bytes", highlight=False)
    console.print(f"It will be written to {target}" + (f" and sent to {send}" if send else "") + ".")
    if not yes and not typer.confirm("Proceed?", default=False):
        console.print("Nothing written.")
        raise typer.Exit(1)
    write_zip(target, files)
    console.print(f"wrote {target}")
    if send:
        try:
            status = send_flare(target, send, case_id)
        except Exception as exc:  # noqa: BLE001 - the bundle stays on disk
            fail(f"sending failed: {exc}; the bundle is at {target}")
        console.print(f"sent to {send}: HTTP {status}")


async def gather_flare(loaded: Loaded, case_id: str | None, log_bytes: int = 256 * 1024) -> dict[str, str]:
    """Every file of the bundle, name → text, already redacted (config first, so its secrets scrub the rest)."""
    from services.runtime import diagnostics as d

    settings = loaded.settings
    scrub = d.Scrubber()
    files: dict[str, str] = {}
    files["config.json"] = d.to_json(d.effective_config(settings, loaded.sources, scrub))
    files["environment.json"] = d.to_json(scrub.env(os.environ))
    files["versions.json"] = d.to_json(d.versions())
    files.update(await _bus_files(settings))
    for name, text in d.log_tails(settings.data_path, log_bytes).items():
        files[f"logs/{name}"] = text
    files["MANIFEST.json"] = d.to_json(
        {
            "case_id": case_id or "",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config_file": loaded.path or "",
            "files": sorted(files),
        }
    )
    return {name: scrub.text(text) for name, text in files.items()}


async def _bus_files(settings: Settings) -> dict[str, str]:
    from services.runtime import diagnostics as d
    from services.runtime.bus import connect

    try:
        bus = await asyncio.wait_for(connect(settings, start_embedded=False, name="vigil-flare"), 3)
    except Exception as exc:  # noqa: BLE001 - a flare of a broken system is the most useful one
        return {"bus-error.txt": f"could not connect to the bus: {exc}\n"}
    try:
        streams, consumers = await d.stream_report(bus)
        beats = await d.heartbeats(bus)
        letters = await d.dead_letters(bus)
    finally:
        await bus.close()
    return {
        "streams.json": d.to_json(streams),
        "consumers.json": d.to_json(consumers),
        "heartbeats.json": d.to_json(beats),
        "metrics.json": d.to_json(d.metrics_snapshot(beats, consumers)),
        "deadletters.jsonl": "".join(json.dumps(x, sort_keys=True, default=str) + "\n" for x in letters),
    }


def write_zip(target: Path, files: dict[str, str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    os.replace(tmp, target)


def send_flare(path: Path, url: str, case_id: str | None) -> int:
    """HTTP POST of the zip; the case id goes in a query parameter and a header."""
    if case_id:
        sep = "&" if urllib.parse.urlparse(url).query else "?"
        url = f"{url}{sep}case_id={urllib.parse.quote(case_id)}"
    req = urllib.request.Request(
        url,
        data=path.read_bytes(),
        method="POST",
        headers={"Content-Type": "application/zip", "X-Vigil-Case-Id": case_id or "", "X-Vigil-Filename": path.name},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - operator-given URL
        return int(resp.status)
