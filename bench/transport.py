"""The throttler on the lean fetch loop and on FastStream, in one run (docs/faststream.md).

bench.alerts's load (drift → anomaly-detector → throttler → ``vigil.alerts.out``,
at ``--rate`` drift events per second) is offered ``--rounds`` times per
transport, alternating lean, faststream, lean, … each on a fresh nats-server and
fresh services, so both see the same machine. The only difference between the
two is the throttler's ``transport`` (its ``vigil run`` sets the class attribute
before serving); the detector stays on the lean loop. Reported per transport:
the median over rounds of alert latency (p50, p99: detector + throttler) and of
the throttler's CPU (cores).

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

TRANSPORTS = ("lean", "faststream")
_SERVE = (
    "import sys; from services.throttler.app import Throttler; Throttler.transport = sys.argv[1]; "
    "from services.cli.main import main; sys.argv = ['vigil', 'run', 'throttler']; main()"
)


def start_throttler(transport: str, settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VIGIL_DATA_DIR": settings.data_dir, "VIGIL_NATS_URL": settings.nats.url}
    out = open(log, "ab")  # noqa: SIM115 - closed when the process is reaped
    return subprocess.Popen([sys.executable, "-c", _SERVE, transport], env=env, stdout=out, stderr=out)


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
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {t: [] for t in TRANSPORTS}
    for n in range(args.rounds):
        for transport in TRANSPORTS:
            r = one_round(transport, args.rate, args.batch, args.seconds, args.novel)
            results[transport].append(r)
            print(
                f"round {n + 1} {transport:>10}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                f"alerts {r['alerts_received']:.0f}/{r['alerts_expected']:.0f}, "
                f"throttler CPU {r['cpu_throttler']:.3f}, offered {r['offered_ev_s']:,.0f} ev/s, "
                f"load {r['load_avg_1m']:.1f}",
                flush=True,
            )
    report(results, args)


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    def med(transport: str, key: str) -> float:
        return statistics.median(r[key] for r in results[transport])

    print(f"bench.transport: throttler lean vs faststream, {args.rounds} rounds each, {args.rate} drift ev/s offered")
    print(f"  {'':24}{'lean':>10}{'faststream':>12}{'ratio':>8}")
    for key, label in (
        ("p50_ms", "alert latency p50 ms"),
        ("p99_ms", "alert latency p99 ms"),
        ("cpu_throttler", "throttler CPU cores"),
        ("cpu_anomaly-detector", "detector CPU cores"),
        ("offered_ev_s", "offered ev/s"),
    ):
        lean, fast = med("lean", key), med("faststream", key)
        print(f"  {label:24}{lean:>10.3f}{fast:>12.3f}{fast / lean if lean else float('nan'):>8.2f}")
    lost = {t: sum(r["alerts_expected"] - r["alerts_received"] for r in results[t]) for t in TRANSPORTS}
    print(f"  alerts missing (all rounds): lean {lost['lean']:.0f}, faststream {lost['faststream']:.0f}")


if __name__ == "__main__":
    main()
