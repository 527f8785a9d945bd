"""The throttler on the lean fetch loop and on FastStream, in one run (docs/faststream.md).

bench.alerts's load (drift → anomaly-detector → throttler → ``vigil.alerts.out``,
at ``--rate`` drift events per second) is offered ``--rounds`` times per variant,
alternating lean, faststream, faststream+linger, lean, … each on a fresh
nats-server and fresh services, so all see the same machine. The variants differ
only in the throttler's ``transport`` and ``fetch_linger`` (its ``vigil run`` sets
the class attributes before serving); the detector stays on the lean loop.
Reported per variant: the median over rounds of alert latency (p50, p99:
detector + throttler), the detector's own p99, the throttler's hop (per alert: seen
on ``vigil.alerts.out`` minus seen on ``vigil.alerts.raw``, free of the detector's
noise) and CPU per service (cores).

    .venv/bin/python -m bench.transport [--rounds 3] [--rate 50000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.alerts import measure, start_service, stop_all
from services.runtime import embedded
from services.runtime.settings import Settings, load_settings

# name: (transport, fetch_linger). "faststream+linger" is FastStream's own gathering of a
# partial batch for 50 ms, which the layer turns off for apps without a linger.
VARIANTS = {"lean": ("lean", 0.0), "faststream": ("faststream", 0.0), "faststream+linger": ("faststream", 0.05)}
TRANSPORTS = tuple(VARIANTS)
_SERVE = (
    "import sys; from services.throttler.app import Throttler; "
    "Throttler.transport = sys.argv[1]; Throttler.fetch_linger = float(sys.argv[2]); "
    "from services.cli.main import main; sys.argv = ['vigil', 'run', 'throttler']; main()"
)


def start_throttler(variant: str, settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VIGIL_DATA_DIR": settings.data_dir, "VIGIL_NATS_URL": settings.nats.url}
    out = open(log, "ab")  # noqa: SIM115 - closed when the process is reaped
    transport, linger = VARIANTS[variant]
    return subprocess.Popen([sys.executable, "-c", _SERVE, transport, str(linger)], env=env, stdout=out, stderr=out)


def one_round(transport: str, rate: int, batch: int, seconds: float, novel: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"vigil-bench-transport-{transport}-") as tmp:
        server = embedded.start(Path(tmp) / "nats", port=-1)
        settings = load_settings(env={"VIGIL_DATA_DIR": str(Path(tmp) / "vigil"), "VIGIL_NATS_URL": server.url})
        procs = [
            start_service("anomaly-detector", settings, Path(tmp) / "anomaly-detector.log", None),
            start_throttler(transport, settings, Path(tmp) / "throttler.log"),
        ]
        try:
            pids = {"anomaly-detector": procs[0].pid, "throttler": procs[1].pid}
            return asyncio.run(measure(settings, rate, batch, seconds, novel, pids))
        finally:
            stop_all(procs, timeout=10)
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=50_000, help="offered drift events per second")
    parser.add_argument("--batch", type=int, default=100, help="drifts per DriftBatch message")
    parser.add_argument("--novel", type=float, default=0.01, help="fraction of drifts that are new behaviours")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--variants", default=",".join(TRANSPORTS), help=f"of {', '.join(TRANSPORTS)}")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    results: dict[str, list[dict[str, float]]] = {t: [] for t in variants}
    for n in range(args.rounds):
        for transport in variants:
            r = one_round(transport, args.rate, args.batch, args.seconds, args.novel)
            results[transport].append(r)
            print(
                f"round {n + 1} {transport:>17}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                f"throttler hop p50 {r['hop_p50_ms']:.2f} ms, p99 {r['hop_p99_ms']:.2f} ms, "
                f"alerts {r['alerts_received']:.0f}/{r['alerts_expected']:.0f}, "
                f"throttler CPU {r['cpu_throttler']:.3f}, offered {r['offered_ev_s']:,.0f} ev/s, "
                f"load {r['load_avg_1m']:.1f}",
                flush=True,
            )
    report(results, args)


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    names = list(results)
    print(f"bench.transport: the throttler per variant, median of {args.rounds} rounds, {args.rate} drift ev/s offered")
    print(f"  {'':24}" + "".join(f"{n:>19}" for n in names) + "  (ratio to lean)")
    for key, label in (
        ("p50_ms", "alert latency p50 ms"),
        ("p99_ms", "alert latency p99 ms"),
        ("raw_p99_ms", "detector alone p99 ms"),
        ("hop_p50_ms", "throttler hop p50 ms"),
        ("hop_p99_ms", "throttler hop p99 ms"),
        ("cpu_throttler", "throttler CPU cores"),
        ("cpu_anomaly-detector", "detector CPU cores"),
        ("offered_ev_s", "offered ev/s"),
    ):
        base = med("lean", key) if "lean" in results else float("nan")
        cells = "".join(f"{med(n, key):>11.3f} ({med(n, key) / base if base else float('nan'):.2f})" for n in names)
        print(f"  {label:24}{cells}")
    lost = {n: sum(r["alerts_expected"] - r["alerts_received"] for r in results[n]) for n in names}
    print("  alerts missing (all rounds): " + ", ".join(f"{n} {v:.0f}" for n, v in lost.items()))


if __name__ == "__main__":
    main()
