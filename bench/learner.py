"""profile-learner benchmarks: core throughput on a realistic mix, replay of many events, bytes per
behaviour node.

    .venv/bin/python -m bench.learner            # 1M-event mix, 10M-event replay, 100k nodes
    .venv/bin/python -m bench.learner --quick    # a short run

Targets (issue 4): >= 300k ev/s through the core with most events already known; <= 300 bytes
per behaviour node. Machines are shared and noisy: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

from contracts.codec import decode_batch, encode_batch
from contracts.events import EventBatch, RawEvent
from services.profile_learner import core, paths, replay
from services.profile_learner.sim import connect_, dns_, exec_, open_, start, syscalls_, tick

BATCH = 500
CFG = core.config(stable=900)


def mix(n: int, images: int = 50, tags: int = 3, novel: float = 0.001, seed: int = 1) -> list[RawEvent]:
    """A node's day: images x tags, each with a working set of behaviours; ``novel`` of events new."""
    rnd = random.Random(seed)
    out: list[RawEvent] = [start(0, f"img{i}", f"v{t}", cid=f"c{i}-{t}") for i in range(images) for t in range(tags)]
    for k in range(n):
        t = 1 + k * 0.01
        i, v = rnd.randrange(images), f"v{rnd.randrange(tags)}"
        img, cid = f"img{i}", f"c{i}-{v[1:]}"
        w = rnd.randrange(40) if rnd.random() > novel else 1000 + k
        if k % 1000 == 999:  # a clock tick per 1,000 events (nodes tick once a second)
            out.append(tick(t))
            continue
        kind = rnd.randrange(9)
        if kind < 4:
            out.append(
                open_(t, img, v, f"/var/lib/app/{w}/data-{w % 7}.db", flags=w % 3, exe=f"/bin/w{w % 5}", cid=cid)
            )
        elif kind < 6:
            out.append(
                exec_(t, img, v, f"/usr/bin/tool{w}", cid=cid, ancestors=("/usr/bin/containerd-shim", "/bin/sh"))
            )
        elif kind < 7:
            out.append(dns_(t, img, v, f"api{w}.svc.cluster.local", cid=cid))
        elif kind < 8:
            out.append(connect_(t, img, v, f"10.0.{w % 250}.{w % 200}", 443 + w % 3, exe="/bin/app", cid=cid))
        else:
            out.append(syscalls_(t, img, v, ["read", "write", f"sys{w}"], cid=cid))
    return out


def batches(events: list[RawEvent], boot: str = "b", offset: int = 0) -> list[EventBatch]:
    return [
        EventBatch(node="n", boot=boot, first_seq=offset + i, events=events[i : i + BATCH])
        for i in range(0, len(events), BATCH)
    ]


def bench_throughput(n: int) -> float:
    """Steady state: the working set is learned; each batch is decoded (as the service does, so its
    objects are fresh in cache) and folded; the core's time and decode + core are reported apart."""
    events = mix(n)
    cut = len(events) // 5
    state = core.State()
    core.fold(state, CFG, batches(events[:cut]))  # learn the working set
    encoded = [encode_batch(b) for b in batches(events[cut:], offset=cut)]
    del events
    gc.collect()
    core_s = decode_s = 0.0
    count = out_events = drifts = 0
    for data in encoded:
        t0 = time.perf_counter()
        batch = decode_batch(data)
        t1 = time.perf_counter()
        evs, db = core.apply_batch(state, CFG, batch)
        core_s += time.perf_counter() - t1
        decode_s += t1 - t0
        count += len(batch.events)
        out_events += len(evs)
        drifts += len(db.drifts) if db else 0
    rate = count / core_s
    print(
        f"core throughput: {count:,} events in {core_s:.2f}s = {rate:,.0f} ev/s ({rate / 300_000:.2f}x the 300k "
        f"target); with msgpack decode {count / (core_s + decode_s):,.0f} ev/s; "
        f"{out_events:,} profile events, {drifts:,} drifts"
    )
    return rate


def bench_replay(total: int, unit: int) -> float:
    """Decode + fold ``total`` events from msgpack batches, as `vigil replay` does (minus the network)."""
    events = mix(unit, seed=2)
    state = core.State()
    stats = replay.Rebuilt()
    done = 0
    spent = 0.0
    rep = 0
    while done < total:
        encoded = [encode_batch(b) for b in batches(events, boot=f"r{rep}")]  # a fresh publisher each round
        gc.collect()
        t0 = time.perf_counter()
        for data in encoded:
            replay.apply(state, CFG, "EVENTS", data, stats)
        spent += time.perf_counter() - t0
        done += len(events)
        rep += 1
    rate = done / spent
    behaviours = sum(sum(v.sizes.values()) for p in state.profiles.values() for v in p.versions.values())
    print(
        f"replay: {done:,} events ({stats.events_messages:,} batches of {BATCH}) decoded + folded in {spent:.2f}s "
        f"= {rate:,.0f} ev/s; {len(state.profiles)} profiles, {behaviours:,} behaviours"
    )
    return rate


def bench_memory(n: int) -> tuple[float, float]:
    """Bytes per behaviour node (tracemalloc), with and without the key strings themselves."""
    evs: list[RawEvent] = [start(0, "mem", "v1")]
    # names the generaliser keeps apart (a standalone 5-digit number would be a wildcard)
    evs += [open_(1, "mem", "v1", f"/srv/data/{k}/file{k}.bin", exe="/bin/app") for k in range(n)]
    bs = batches(evs)
    state = core.State()
    cfg = core.config(stable=900, size_threshold=10 * n)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for b in bs:
        core.apply_batch(state, cfg, b)  # outputs dropped: only the state stays
    paths._path_memo.clear()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    keys = state.profiles["mem"].versions["v1"].behaviours["open"]["/bin/app"]
    assert len(keys) == n, len(keys)
    node = (after - before) / n
    key_bytes = sum(k.__sizeof__() for k in keys) / n
    print(
        f"memory: {n:,} behaviour nodes: {node:.0f} bytes/node including the key string "
        f"({key_bytes:.0f} of them), {node - key_bytes:.0f} bytes/node of structure "
        f"(target <= 300: {'met' if node <= 300 else 'NOT met'})"
    )
    return node, key_bytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--replay-events", type=int, default=0, help="events to replay (default 10M, quick 1M)")
    args = ap.parse_args()
    n = 200_000 if args.quick else 1_000_000
    replay_total = args.replay_events or (1_000_000 if args.quick else 10_000_000)
    bench_throughput(n)
    bench_replay(replay_total, min(500_000, replay_total))
    bench_memory(20_000 if args.quick else 100_000)


if __name__ == "__main__":
    main()
