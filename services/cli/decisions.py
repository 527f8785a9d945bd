"""`vigil decisions`: The decision archive (sql, export)."""

from __future__ import annotations

import typer

NAME = "decisions"
app = typer.Typer(help="The decision archive (sql, export).", no_args_is_help=True)
