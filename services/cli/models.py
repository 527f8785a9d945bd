"""`vigil models`: Behaviour modelling windows (list)."""

from __future__ import annotations

import typer

NAME = "models"
app = typer.Typer(help="Behaviour modelling windows (list).", no_args_is_help=True)
