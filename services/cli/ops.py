"""Operations commands mounted at the top level: `vigil self-test`, `vigil flare`, `vigil replay`."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Add the operations commands to the root CLI."""
