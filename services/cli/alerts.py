"""`vigil alerts`: Anomaly alerts (tail, list)."""

from __future__ import annotations

import typer

NAME = "alerts"
app = typer.Typer(help="Anomaly alerts (tail, list).", no_args_is_help=True)
