"""`vigil events tail`: raw runtime events from the EVENTS stream.

Reads through ephemeral pull consumers (nothing acked, nothing durable left
behind), decodes each msgpack batch and prints matching events: ``-o json``
gives one trace-format object per line (DESIGN.md: bare ``kind``, RFC3339
``time``, contract field names), ``-o table`` a summary line per event.

It first prints the last ``--last`` matching events of what the stream held when
it started (read backwards in growing windows, so a long stream is read only as
far back as needed; events arriving meanwhile are not waited for: on a live node
the stream never runs dry), then exits, or with ``--follow`` prints new events
as they arrive until Ctrl-C.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import nats.errors
import typer
from nats.js import api

from contracts.subjects import EVENTS, EVENTS_ALL
from services.cli.common import fail, reach_bus, settings_or_exit
from services.cli.output import Format, json_line, rows
from services.runtime.bus import Bus
from services.runtime.errors import VigilError
from services.runtime.settings import Settings

NAME = "events"
app = typer.Typer(help="Raw runtime events (tail).", no_args_is_help=True)

COLUMNS = ["time", "kind", "node", "container", "image", "pid", "comm", "detail"]


def matches(obj: dict[str, Any], kind: str | None, image: str | None, container: str | None, node: str | None) -> bool:
    c = obj.get("container") or {}
    return (
        (not kind or obj["kind"] == kind)
        and (not image or c.get("image_name") == image)
        and (not container or str(c.get("id", "")).startswith(container))
        and (not node or obj.get("node") == node)
    )


def detail(obj: dict[str, Any]) -> str:
    if "file" in obj:
        return f"{obj['file']['path']} flags={obj['file']['flags']:#o}"
    if "dns" in obj:
        return f"{obj['dns']['name']} {obj['dns']['qtype']}"
    if "net" in obj:
        return f"{obj['net']['addr']}:{obj['net']['port']} {obj['net']['family']}"
    if "syscalls" in obj:
        return ",".join(obj["syscalls"])
    if obj["kind"] == "exit":
        return f"code={obj.get('exit_code', 0)}"
    proc = obj.get("process") or {}
    return " ".join(proc.get("argv") or [proc.get("path", "")]) if obj["kind"] == "exec" else ""


def row(obj: dict[str, Any]) -> dict[str, Any]:
    c, p = obj.get("container") or {}, obj.get("process") or {}
    image = c.get("image_name", "") + (":" + c["image_tag"] if c.get("image_tag") else "")
    return {
        "time": obj["time"],
        "kind": obj["kind"],
        "node": obj.get("node", ""),
        "container": str(c.get("id", ""))[:12],
        "image": image,
        "pid": p.get("pid", ""),
        "comm": p.get("comm", ""),
        "detail": detail(obj),
    }


def objects(payloads: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    from contracts import trace
    from contracts.codec import ContractError, decode_batch

    for data in payloads:
        try:
            batch = decode_batch(data)
        except ContractError:
            continue
        for event in batch.events:
            yield trace.to_obj(event)


async def _tail(settings: Settings, follow: bool, last: int, filters: dict[str, Any], output: Format) -> None:
    from services.runtime.bus import unsubscribe_quietly

    bus = await reach_bus(settings, "vigil-events")
    try:
        state = (await bus.js.stream_info(EVENTS)).state  # what is stored now: the history to read
        keep = _Matcher(filters)
        _emit(await _history(bus, state.first_seq, state.last_seq, last, keep), output)
        if not follow:
            return
        sub = await _reader(bus, state.last_seq + 1)
        try:
            while True:
                _emit(keep(await _next(sub, timeout=5.0)), output)
        finally:
            await unsubscribe_quietly(sub)
    finally:
        await bus.close()


async def _reader(bus: Bus, start: int) -> Any:
    """An ephemeral pull consumer of EVENTS from stream sequence ``start`` (nothing acked,
    nothing left behind)."""
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(start, 1),
        inactive_threshold=30.0,
    )
    return await bus.js.pull_subscribe(EVENTS_ALL, stream=EVENTS, config=config)


async def _history(bus: Bus, first: int, end: int, last: int, keep: _Matcher) -> list[dict[str, Any]]:
    """The last ``last`` matching events stored from ``first`` up to ``end``, read backwards
    in growing windows: a long stream is read only as far back as the events need."""
    from services.runtime.bus import unsubscribe_quietly
    from services.runtime.fetch import batches_until

    found: list[dict[str, Any]] = []  # oldest first
    stop, window = end, max(last, 64)
    while last > 0 and stop >= max(first, 1) and len(found) < last:
        start = max(first, stop - window + 1, 1)
        sub = await _reader(bus, start)
        try:
            chunk = [obj async for msgs in batches_until(sub, stop) for obj in keep(msgs)]
        finally:
            await unsubscribe_quietly(sub)
        found = chunk + found
        stop, window = start - 1, window * 4
    return found[-last:] if last > 0 else []


async def _next(sub: Any, timeout: float) -> list[Any]:
    try:
        return list(await sub.fetch(500, timeout=timeout))
    except TimeoutError:  # nats.errors.TimeoutError, or asyncio's from inside nats-py's fetch
        return []


class _Matcher:
    """The events of some messages that pass the filters; a clock tick (sent to every
    partition) once, and only when ticks are asked for."""

    def __init__(self, filters: dict[str, Any]) -> None:
        self.filters = filters
        self.seen_ticks: set[str] = set()

    def __call__(self, msgs: list[Any]) -> list[dict[str, Any]]:
        out = []
        for obj in objects(m.data for m in msgs):
            if obj["kind"] == "tick":
                if obj["time"] in self.seen_ticks or self.filters.get("kind") != "tick":
                    continue
                self.seen_ticks.add(obj["time"])
            if matches(obj, **self.filters):
                out.append(obj)
        return out


def _emit(objs: list[dict[str, Any]], output: Format) -> None:
    if output == Format.json:
        for obj in objs:
            json_line(obj)
    elif objs:
        rows([row(o) for o in objs], COLUMNS, output)


@app.command("tail")
def tail(
    kind: str | None = typer.Option(
        None, "--kind", "-k", help="exec, exit, open, connect, dns, syscalls, container_start, container_stop, tick"
    ),
    image: str | None = typer.Option(None, "--image", help="image name"),
    container: str | None = typer.Option(None, "--container", help="container id or prefix"),
    node: str | None = typer.Option(None, "--node"),
    last: int = typer.Option(50, "--last", "-n", help="matching events already stored to print first"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new events"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    output: Format = typer.Option(Format.table, "--output", "-o", help="table or json"),
) -> None:
    """The last stored events (and, with -f, new ones as they arrive)."""
    filters = {"kind": kind, "image": image, "container": container, "node": node}
    try:
        asyncio.run(_tail(settings_or_exit(config), follow, last, filters, output))
    except KeyboardInterrupt:
        pass
    except (VigilError, OSError, nats.errors.Error) as exc:
        fail(str(exc))
