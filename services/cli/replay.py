"""`vigil replay SERVICE`: rebuild a service's state from the log and compare it with its snapshot."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Add this module's top-level command(s) to the root CLI."""
