"""Benchmarks: each module prints figures and ratios (`python -m bench.<name>`).
Never timed asserts in tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_figures(path: Path | None, figures: dict[str, float]) -> None:
    """A bench's figures as JSON (``--json PATH``), for bench.compare."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=1, sort_keys=True))
