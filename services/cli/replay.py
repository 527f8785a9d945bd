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


async def replay_profile_learner(settings: Settings) -> dict[str, Any]:
    """Rebuild each partition's state from EVENTS + COMMANDS up to its snapshot's
    positions and compare bytes with the snapshot."""
    from contracts.subjects import COMMANDS, EVENTS
    from services.profile_learner import core, replay
    from services.profile_learner.app import core_config, load_snapshots
    from services.runtime.log import last_seq

    snaps = load_snapshots(settings)
    cfg = core_config(settings)
    totals = replay.Rebuilt()
    profiles, results = 0, {}
    bus = await reach_bus(settings, "vigil-replay")
    try:
        ends = {EVENTS: await last_seq(bus.js, EVENTS), COMMANDS: await last_seq(bus.js, COMMANDS)}
        for p in range(settings.nats.partitions):
            snap = snaps.get(p)
            state = core.State()
            stats = await replay.rebuild_from_log(bus.js, state, cfg, {}, dict(snap.positions) if snap else ends, p)
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
        "result": result,
    }


def register(root: typer.Typer) -> None:
    """Add this module's top-level command(s) to the root CLI."""

    @root.command("replay")
    def replay_cmd(
        service: str = typer.Argument(..., help="profile-learner"),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
        output: Format = typer.Option(Format.table, "--output", "-o", help="table or json"),
    ) -> None:
        """Rebuild SERVICE's state from the log and report whether it matches its snapshot."""
        try:
            settings = load(config).settings
        except SettingsError as exc:
            fail(str(exc), 2)
        if service != "profile-learner":
            fail(f"replay supports: profile-learner (got {service!r})", 2)
        try:
            report = asyncio.run(replay_profile_learner(settings))
        except VigilError as exc:
            fail(str(exc))
        if output == Format.json:
            json_line(report)
        else:
            for key, value in report.items():
                console.print(f"{key}: {value}")
        if report["result"] == "mismatch":
            raise typer.Exit(1)
