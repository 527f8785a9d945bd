"""`vigil events`: Raw runtime events (tail)."""

from __future__ import annotations

import typer

NAME = "events"
app = typer.Typer(help="Raw runtime events (tail).", no_args_is_help=True)
