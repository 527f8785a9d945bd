"""One bench, this tree against an older commit, in one run: the before/after claim
measured side by side on the same machine (these machines are noisy).

The older commit is checked out in a temporary git worktree and this tree's
``bench/`` is laid over it, so both sides run the same harness and only the system
under test differs. Rounds alternate (old, new, new, old, …) so both see the same
machine; each side's figures are the median over its rounds; a ratio is new / old.

    python -m bench.compare [--old main] [--rounds 3] BENCH [-- BENCH ARGS]
    python -m bench.compare --old fe203d5 e2e -- --rates 50000,100000,200000 --seconds 4

BENCH is a module of this package that takes ``--json PATH`` (e2e, runtime, alerts).
Both sides run with this tree's interpreter and packages (PYTHONPATH = the side's
tree); a commit whose dependencies differ needs its own venv instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def old_tree(rev: str, where: Path) -> Path:
    """``rev`` checked out at ``where`` with this tree's bench/ laid over it."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev], check=True, capture_output=True
    )
    shutil.copytree(ROOT / "bench", where / "bench", dirs_exist_ok=True)
    return where


def one_run(tree: Path, bench: str, args: list[str], out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", f"bench.{bench}", *args, "--json", str(out)]
    subprocess.run(cmd, cwd=tree, env=env, check=True)
    figures: dict[str, float] = json.loads(out.read_text())
    return figures


def table(old: list[dict[str, float]], new: list[dict[str, float]], labels: tuple[str, str]) -> str:
    names = sorted(set().union(*old, *new))
    rows = [f"| figure | {labels[0]} | {labels[1]} | ratio (new / old) |", "|---|---|---|---|"]
    for name in names:
        a = statistics.median([r[name] for r in old if name in r] or [float("nan")])
        b = statistics.median([r[name] for r in new if name in r] or [float("nan")])
        ratio = f"{b / a:.3f}" if a else "-"
        rows.append(f"| {name} | {a:,.4g} | {b:,.4g} | {ratio} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="main", help="the commit to compare with (default: main)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side")
    parser.add_argument("bench", help="a bench module that takes --json: e2e, runtime, alerts")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="after --: the bench's own arguments")
    args = parser.parse_args(argv)
    bench_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="vigil-bench-compare-") as tmp_name:
        tmp = Path(tmp_name)
        old = old_tree(args.old, tmp / "old")
        try:
            sides = {"old": old, "new": ROOT}
            for n in range(args.rounds):
                order = ("old", "new") if n % 2 == 0 else ("new", "old")
                for side in order:
                    print(f"--- round {n + 1}/{args.rounds}: {side} ({sides[side]})", flush=True)
                    results[side].append(one_run(sides[side], args.bench, bench_args, tmp / f"{side}-{n}.json"))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    labels = (f"old ({args.old})", f"new ({head.stdout.strip()}{'+' if _dirty() else ''})")
    print(f"\nbench.compare {args.bench} {' '.join(bench_args)}: medians of {args.rounds} rounds per side")
    print(table(results["old"], results["new"], labels))


def _dirty() -> bool:
    status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True)
    return bool(status.stdout.strip())


if __name__ == "__main__":
    main()
