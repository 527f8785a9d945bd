"""Shared test helpers: a real nats-server per test, settings pointing at it,
services run in-process or as killable subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from services.runtime.bus import Bus, connect, ensure_buckets
from services.runtime.service import AppBase, Runner
from services.runtime.settings import Settings, load_settings


def make_settings(data_dir: Path, url: str, **env: str) -> Settings:
    """Settings as a service would load them, with VIGIL_* overrides given as kwargs
    (``make_settings(p, url, MAX_ALERT_PER_SEC="2")``). Partition leases last 2 s
    (not 10): a SIGKILLed learner's partitions are taken over within ~3 s."""
    environ = {"VIGIL_DATA_DIR": str(data_dir), "VIGIL_NATS_URL": url, "VIGIL_NATS_LEASE_TTL": "2s"}
    environ.update({f"VIGIL_{k}": v for k, v in env.items()})
    return load_settings(env=environ)


def service_env(settings: Settings) -> dict[str, str]:
    """Environment for a `vigil …` subprocess with exactly these settings (every key)."""
    from services.runtime.settings import Size, env_name, flatten

    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    for key, value in flatten(settings):
        if isinstance(value, float):  # Duration too
            env[env_name(key)] = repr(float(value))
        elif isinstance(value, Size):
            env[env_name(key)] = str(int(value))
        else:
            env[env_name(key)] = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return env


async def open_bus(settings: Settings) -> Bus:
    from services.runtime.bus import retry_transient

    bus = await connect(settings, start_embedded=False)
    await bus.ensure_streams()
    await retry_transient("creating buckets", lambda: ensure_buckets(bus))
    return bus


@contextlib.asynccontextmanager
async def running(app: AppBase, settings: Settings) -> AsyncIterator[Runner]:
    """Run an app in-process on its own connection until the block exits."""
    bus = await open_bus(settings)
    runner = Runner(app, bus)
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
        await bus.close()


async def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll an (a)sync predicate until it is truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def read_stream(bus: Bus, stream: str, subject: str | None = None) -> list[Any]:
    """Every message currently in a stream (optionally one subject), in order, none
    missed however slow the machine: the runtime's ordered log reader."""
    from services.runtime.log import last_seq, read_messages

    last = await last_seq(bus.js, stream)
    return [m async for m in read_messages(bus.js, stream, 1, last, (subject,) if subject else ())]


async def alerts_and_decisions(settings: Settings) -> tuple[list[Any], list[Any]]:
    """Every message on vigil.alerts.out, and every message of DECISIONS, in stream order."""
    from contracts.subjects import ALERTS, ALERTS_OUT, DECISIONS

    bus = await open_bus(settings)
    try:
        return await read_stream(bus, ALERTS, ALERTS_OUT), await read_stream(bus, DECISIONS)
    finally:
        await bus.close()


def decode_all(msgs: list[Any], tp: Any) -> list[Any]:
    dec = msgspec.json.Decoder(tp)
    return [dec.decode(m.data) for m in msgs]


def decisions_in(msgs: list[Any]) -> list[Any]:
    """The decision messages DECISIONS carries, DecisionBatches unpacked, in order."""
    from contracts.decisions import batch_entries, decision_decoder

    return [decision_decoder.decode(e) for m in msgs for e in (batch_entries(m.data) or [m.data])]


@contextlib.contextmanager
def vigil_process(settings: Settings, *args: str, log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`vigil ARGS…` as a subprocess on the same bus; killed at the end of the block."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", *args], env=service_env(settings), stdout=out, stderr=out
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


async def heartbeat_pids(settings: Settings, service: str) -> set[int]:
    """Pids of the live instances of a service, from the heartbeat bucket."""
    from contracts.codec import decode_json
    from contracts.subjects import HEARTBEAT_BUCKET

    bus = await open_bus(settings)
    try:
        kv = await bus.js.key_value(HEARTBEAT_BUCKET)
        try:
            keys = await kv.keys()
        except Exception:  # noqa: BLE001 - nats NoKeysError: nobody alive yet
            return set()
        pids = set()
        for key in keys:
            if key.startswith(service + "."):
                pids.add(decode_json("heartbeat", (await kv.get(key)).value or b"").pid)
        return pids
    finally:
        await bus.close()


def vigil_in(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`vigil ARGS…` to completion in exactly this environment, output captured as text
    (past ``timeout`` it raises ``TimeoutExpired``: a hang)."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> Any:
    """Poll a predicate (from a test that is not async) until it is truthy; fail on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def run_vigil(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`vigil ARGS…` to completion with these settings (plus extra env), output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        env={**service_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
