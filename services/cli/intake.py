"""`vigil intake --socket PATH`: the Gatekeeper-compatible decision intake sidecar."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import typer


def register(root: typer.Typer) -> None:
    """Add this module's top-level command(s) to the root CLI."""
    root.command("intake")(intake)


def intake(
    socket: Path | None = typer.Option(None, "--socket", "-s", help="unix socket to listen on (turns the intake on)"),
    mode: str | None = typer.Option(
        None, "--mode", help="socket permissions, octal (default decision_intake.socket_mode, 0600)"
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
) -> None:
    """Take decisions (ndjson, one per line) on a unix socket and store them in JetStream.

    Off unless configured: pass --socket, or set decision_intake.enabled (socket
    decision_intake.socket, default <data_dir>/intake.sock). Every line is
    answered after JetStream stored it: {"ok":true,"id":…} or {"ok":false,"reason":…}.
    """
    from services.cli.common import settings_or_exit, setup_logging
    from services.cli.output import console, err_console
    from services.decision_intake.app import serve, socket_path
    from services.runtime.errors import VigilError

    settings = settings_or_exit(config)
    if socket is None and not settings.decision_intake.enabled:
        err_console.print("[red]error:[/red] the intake is off: pass --socket PATH or set decision_intake.enabled")
        raise typer.Exit(2)
    if mode is not None:
        import msgspec

        try:
            int(mode, 8)
        except ValueError as exc:
            err_console.print(f"[red]error:[/red] --mode {mode!r} is not an octal mode like 0600")
            raise typer.Exit(2) from exc
        settings = msgspec.structs.replace(
            settings, decision_intake=msgspec.structs.replace(settings.decision_intake, socket_mode=mode)
        )
    setup_logging(settings)
    path = socket_path(settings, socket)

    async def main() -> dict[str, int]:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        return dict(await serve(settings, path, stopping))

    console.print(f"decision intake on {path}", highlight=False)
    try:
        counters = asyncio.run(main())
    except (VigilError, OSError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"intake stopped: {counters}", highlight=False)
