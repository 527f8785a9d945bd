"""`vigil intake --socket PATH`: the Gatekeeper-compatible decision intake sidecar."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Add this module's top-level command(s) to the root CLI."""
