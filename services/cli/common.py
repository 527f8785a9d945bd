"""What every `vigil` command shares: the --config and --output options, loading
settings (a bad value exits 2 naming the key) and logging set-up."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional

import typer

from services.cli.output import Format, err_console
from services.runtime.errors import VigilError
from services.runtime.settings import Loaded, Settings, SettingsError, load

if TYPE_CHECKING:
    from services.runtime.bus import Bus

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (default: $VIGIL_CONFIG or ./vigil.yaml)")
OutputOpt = typer.Option(Format.table, "--output", "-o", help="table or json")


def settings_or_exit(config: Optional[Path] = None) -> Settings:  # noqa: UP045 - typer reads the annotation
    try:
        return load(config).settings
    except SettingsError as exc:
        fail(str(exc), 2)


def fail(message: str, code: int = 1) -> NoReturn:
    """Say what went wrong on stderr and exit with ``code`` (1: it failed, 2: bad usage)."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.telemetry.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def load_quietly_or_exit(config: Path | None) -> Loaded:
    """Settings with their sources, for the commands that report on a possibly broken
    system (self-test, flare)."""
    # An unreachable bus is a named check / a bus-error.txt here, not a traceback per reconnect attempt.
    logging.getLogger("nats.aio.client").setLevel(logging.CRITICAL)
    try:
        return load(config)
    except SettingsError as exc:
        fail(str(exc), 2)


CONNECT_TIMEOUT = 10.0  # s: nats-py retries an unreachable server forever; a command gives up


async def reach_bus(settings: Settings, name: str) -> Bus:
    """The running Vigil's bus, for a command (never an embedded server of its own);
    a server that does not answer within :data:`CONNECT_TIMEOUT` is a ``VigilError``."""
    from services.runtime.bus import connect, resolve_url

    try:
        return await asyncio.wait_for(connect(settings, start_embedded=False, name=name), CONNECT_TIMEOUT)
    except TimeoutError as exc:
        raise VigilError(f"no NATS server answered at {resolve_url(settings)} within {CONNECT_TIMEOUT:g} s") from exc
