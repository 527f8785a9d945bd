"""`vigil profiles`: Profiles learned per image (list, show, set-state, reset, export)."""

from __future__ import annotations

import typer

NAME = "profiles"
app = typer.Typer(help="Profiles learned per image (list, show, set-state, reset, export).", no_args_is_help=True)
