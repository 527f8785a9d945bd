"""`vigil intake --socket PATH` / `--gatekeeper-dir PATH`: the Gatekeeper decision intake sidecar."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import msgspec
import typer

from services.runtime.settings import Settings


def register(root: typer.Typer) -> None:
    """Add this module's top-level command(s) to the root CLI."""
    root.command("intake")(intake)


def intake(
    socket: Path | None = typer.Option(None, "--socket", "-s", help="unix socket to listen on (turns the intake on)"),
    gatekeeper_dir: Path | None = typer.Option(
        None, "--gatekeeper-dir", help="Gatekeeper's disk-export path to follow (its Connection's `path`)"
    ),
    mode: str | None = typer.Option(
        None, "--mode", help="socket permissions, octal (default decision_intake.socket_mode, 0600)"
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
) -> None:
    """Take decisions (ndjson, one per line) on a unix socket and/or from
    Gatekeeper's disk-export directory, and store them in JetStream.

    Off unless configured: pass --socket, or set decision_intake.enabled
    (socket decision_intake.socket, default <data_dir>/intake.sock); pass
    --gatekeeper-dir, or set decision_intake.gatekeeper_dir. Every socket
    line is answered after JetStream stored it: {"ok":true,"id":…} or
    {"ok":false,"reason":…}. Files are followed as Gatekeeper writes,
    renames and deletes them, each line stored once.
    """
    from services.cli.common import fail, settings_or_exit, setup_logging
    from services.cli.output import console
    from services.decision_intake.app import socket_path
    from services.runtime.errors import VigilError

    settings = _with_mode(settings_or_exit(config), mode)
    directory = gatekeeper_dir or (
        Path(settings.decision_intake.gatekeeper_dir) if settings.decision_intake.gatekeeper_dir else None
    )
    listen = socket is not None or (settings.decision_intake.enabled and gatekeeper_dir is None)
    if not listen and directory is None:
        fail(
            "the intake is off: pass --socket PATH or --gatekeeper-dir PATH, "
            "or set decision_intake.enabled or decision_intake.gatekeeper_dir",
            2,
        )
    setup_logging(settings)
    path = socket_path(settings, socket) if listen else None
    if path is not None:
        console.print(f"decision intake on {path}", highlight=False)
    if directory is not None:
        console.print(f"decision intake following {directory}", highlight=False)
    try:
        counters = asyncio.run(_serve(settings, path, directory))
    except (VigilError, OSError) as exc:
        fail(str(exc))
    console.print(f"intake stopped: {counters}", highlight=False)


def _with_mode(settings: Settings, mode: str | None) -> Settings:
    """The settings with ``--mode`` as ``decision_intake.socket_mode`` (an octal mode, or exit 2)."""
    from services.cli.common import fail

    if mode is None:
        return settings
    try:
        int(mode, 8)
    except ValueError:
        fail(f"--mode {mode!r} is not an octal mode like 0600", 2)
    return msgspec.structs.replace(
        settings, decision_intake=msgspec.structs.replace(settings.decision_intake, socket_mode=mode)
    )


async def _serve(settings: Settings, path: Path | None, directory: Path | None) -> dict[str, int]:
    """Run the intake until SIGTERM or SIGINT; returns its counters."""
    from services.decision_intake.app import serve

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    return dict(await serve(settings, path, stopping, gatekeeper_dir=directory))
