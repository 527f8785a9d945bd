"""Golden files: expected generator output, reviewed by eye once, then asserted byte for byte.

Regenerate only on purpose: ``VIGIL_UPDATE_GOLDEN=1 pytest tests/unit -k <test>``,
then read the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent
UPDATE_ENV = "VIGIL_UPDATE_GOLDEN"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get(UPDATE_ENV) == "1":
        path.write_text(text)
    assert path.exists(), f"golden file {name} missing: run with {UPDATE_ENV}=1 once and review it"
    assert text == path.read_text(), f"output differs from golden {name} (regenerate with {UPDATE_ENV}=1 if intended)"
