"""`vigil replay SERVICE`: rebuild a service's state from the log and compare it with its snapshot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from services.cli.common import fail, reach_bus
from services.cli.output import Format, console, json_line
from services.runtime.errors import VigilError
from services.runtime.settings import Settings, SettingsError, load


async def replay_profile_learner(settings: Settings, archive: Path | None = None) -> dict[str, Any]:
    """Rebuild each partition's state from EVENTS + COMMANDS up to its snapshot's
    positions and compare bytes with the snapshot. The snapshot is the newest of this
    host's file and the shared copy; when compaction purged the head of the log, the
    rebuild starts from the shared *base* snapshot the head was purged to; with ``archive``
    (a Parquet archive, `storage.archive_dir`) it starts from nothing and reads the
    archive, then the retained log."""
    from contracts.subjects import COMMANDS, EVENTS
    from services.profile_learner import core, replay
    from services.profile_learner.app import core_config, load_snapshots, shared_snapshots
    from services.runtime.event_archive import read_archive
    from services.runtime.log import last_seq

    cfg = core_config(settings)
    totals = replay.Rebuilt()
    profiles, results, bases, archived_rows = 0, {}, 0, 0
    bus = await reach_bus(settings, "vigil-replay")
    try:
        snaps, base_snaps = await shared_snapshots(bus.js, settings, load_snapshots(settings))
        ends = {EVENTS: await last_seq(bus.js, EVENTS), COMMANDS: await last_seq(bus.js, COMMANDS)}
        for p in range(settings.nats.partitions):
            snap, base = snaps.get(p), (None if archive else base_snaps.get(p))
            state, start = (base.state, dict(base.positions)) if base else (core.State(), {})
            bases += base is not None
            upto = dict(snap.positions) if snap else ends
            archived = await asyncio.to_thread(read_archive, archive, p) if archive else []
            archived_rows += len(archived)
            stats = await replay.rebuild_from_log(bus.js, state, cfg, start, upto, p, archived)
            for field in ("events_messages", "commands", "undecodable"):
                setattr(totals, field, getattr(totals, field) + getattr(stats, field))
            profiles += len(state.profiles)
            if snap is not None:
                results[p] = "match" if core.encode_state(state) == core.encode_state(snap.state) else "mismatch"
    finally:
        await bus.close()
    if not results:
        result = "no-snapshot"
    else:
        result = "mismatch" if "mismatch" in results.values() else "match"
    return {
        "service": "profile-learner",
        "partitions": {str(p): r for p, r in sorted(results.items())},
        "event_batches": totals.events_messages,
        "commands": totals.commands,
        "undecodable": totals.undecodable,
        "profiles": profiles,
        "from_base_snapshots": bases,
        "from_archive": archived_rows,
        "result": result,
    }


def register(root: typer.Typer) -> None:
    """Add this module's top-level command(s) to the root CLI."""

    @root.command("replay")
    def replay_cmd(
        service: str = typer.Argument(..., help="profile-learner"),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
        output: Format = typer.Option(Format.table, "--output", "-o", help="table or json"),
        from_archive: Path | None = typer.Option(
            None, "--from-archive", help="a Parquet archive of EVENTS (storage.archive_dir): rebuild from it + the log"
        ),
    ) -> None:
        """Rebuild SERVICE's state from the log and report whether it matches its snapshot."""
        try:
            settings = load(config).settings
        except SettingsError as exc:
            fail(str(exc), 2)
        if service != "profile-learner":
            fail(f"replay supports: profile-learner (got {service!r})", 2)
        try:
            report = asyncio.run(replay_profile_learner(settings, from_archive))
        except VigilError as exc:
            fail(str(exc))
        if output == Format.json:
            json_line(report)
        else:
            for key, value in report.items():
                console.print(f"{key}: {value}")
        if report["result"] == "mismatch":
            raise typer.Exit(1)
