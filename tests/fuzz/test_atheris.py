"""Each fuzz target runs under atheris for a bounded number of inputs, in a
subprocess (libFuzzer exits the process), and must finish without a crash.

The seed is fixed so CI runs the same inputs every time; set VIGIL_FUZZ_SEED
(e.g. ``0`` for a random one) and VIGIL_FUZZ_SCALE (a run-count multiplier) to
explore further. A crash leaves its input in the test's tmp directory and in
the failure message, to be added to test_regressions.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris not installed (it is in the dev extra: pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[2]

# Runs per target: 3-8 s each on one core (docs/fuzzing.md has the measured rates); together < 20 s.
RUNS = {"codec": 1_500_000, "trace": 300_000, "intake": 600_000}
MAX_LEN = 16_384  # longer than any line a test writes; libFuzzer grows inputs towards it


def fuzz(target: str, tmp: Path, runs: int, seed: str) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable, "-m", f"tests.fuzz.fuzz_{target}",
        f"-runs={runs}", f"-max_len={MAX_LEN}", f"-seed={seed}", f"-artifact_prefix={tmp}/",
        "-print_final_stats=1", str(tmp / "corpus"),
    ]  # fmt: skip
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("target", sorted(RUNS))
def test_target_survives_fuzzing(target: str, tmp_path: Path) -> None:
    runs = int(RUNS[target] * float(os.environ.get("VIGIL_FUZZ_SCALE", "1")))
    result = fuzz(target, tmp_path, runs, os.environ.get("VIGIL_FUZZ_SEED", "1"))
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    tail = result.stderr[-4000:]
    assert result.returncode == 0 and not crashes, f"fuzz_{target} failed ({crashes}):\n{tail}"
    done = re.search(r"Done (\d+) runs", result.stderr)
    assert done and int(done.group(1)) >= runs, tail  # it really ran, from the generated seeds
    assert any((tmp_path / "corpus").iterdir())
