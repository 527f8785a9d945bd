"""`vigil workloads`: the workload registry (container id → image, tag, pod).

Entries live in the NATS KV bucket ``vigil_workloads`` (one JSON Workload per
container id). The collector fills it from the container runtimes it finds
(``source`` = docker, podman, containerd, cri-o; docs/collector.md); entries
added here are for runtimes it has no source for. The collector watches the
bucket, so an entry added here names the container's events from the next
one on (and its events held or dropped for want of a name are reported again).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from contracts.workloads import Workload
from services.cli.common import ConfigOpt, OutputOpt, fail, reach_bus, settings_or_exit
from services.cli.output import Format, console, rows
from services.runtime.errors import VigilError
from services.runtime.settings import Settings

NAME = "workloads"
app = typer.Typer(
    help="The workload registry: container id → image, tag, pod (add, list, remove).", no_args_is_help=True
)

# The table shows docker's 12-character ids and whether the container still runs; -o json has every field.
COLUMNS = ["container", "image_name", "image_tag", "name", "pod", "namespace", "source", "state"]


async def _with_bucket(settings: Settings, action: Any) -> Any:
    from collector.workloads import bucket

    bus = await reach_bus(settings, "vigil-workloads")
    try:
        return await action(await bucket(bus.js))
    finally:
        await bus.close()


async def registered(kv: Any) -> list[Workload]:
    """Every readable entry of the registry bucket (a watch read to its end, then stopped)."""
    from contracts import workloads as wl

    out = []
    watcher = await kv.watchall()
    try:
        async for entry in watcher:
            if entry is None:
                break
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                continue
            try:
                out.append(wl.decode(entry.value))
            except Exception:  # noqa: BLE001 - unreadable entry
                continue
    finally:
        await watcher.stop()
    return out


async def registered_workloads(settings: Settings) -> list[Workload]:
    """The registry's workloads (``vigil profiles export`` selects pods by their labels)."""
    result: list[Workload] = await _with_bucket(settings, registered)
    return result


def _run(settings: Settings, action: Any) -> Any:
    try:
        return asyncio.run(_with_bucket(settings, action))
    except (VigilError, OSError) as exc:
        fail(str(exc))


@app.command("add")
def add(
    container_id: str = typer.Argument(..., help="container id (64 hex, or a >= 12 character prefix)"),
    image: str = typer.Option(..., "--image", help="image reference, e.g. nginx:1.25 or registry/app@sha256:…"),
    pod: str = typer.Option("", help="pod name"),
    namespace: str = typer.Option("", help="namespace"),
    name: str = typer.Option("", help="container name"),
    config: Path | None = ConfigOpt,
) -> None:
    """Register (or replace) the workload of a container."""
    from collector.workloads import WorkloadFileError, from_fields, put

    try:
        w = from_fields(
            {"container_id": container_id, "image": image, "pod": pod, "namespace": namespace, "name": name}, "cli"
        )
    except WorkloadFileError as exc:
        fail(str(exc), 2)
    _run(settings_or_exit(config), lambda kv: put(kv, w))
    console.print(f"registered {w.container_id[:12]}: {w.image_name}:{w.image_tag or '-'}")


@app.command("list")
def list_(config: Path | None = ConfigOpt, output: Format = OutputOpt) -> None:
    """Every registered workload."""
    import msgspec

    async def read(kv: Any) -> list[dict[str, Any]]:
        out = [msgspec.to_builtins(w) for w in await registered(kv)]
        for item in out:
            item.pop("type", None)
        return sorted(out, key=lambda i: i["container_id"])

    items = _run(settings_or_exit(config), read)
    if output != Format.json:
        for item in items:
            item["container"] = item["container_id"][:12]
            item["state"] = "stopped" if item.get("stopped") else "running"
    rows(items, COLUMNS, output, title="workloads")


@app.command("remove")
def remove(container_id: str = typer.Argument(...), config: Path | None = ConfigOpt) -> None:
    """Forget a container's workload (its events become unknown again)."""
    from contracts import workloads as wl

    async def delete(kv: Any) -> bool:
        try:
            await kv.get(wl.key(container_id))
        except Exception:  # noqa: BLE001 - not registered
            return False
        await kv.delete(wl.key(container_id))
        return True

    if not _run(settings_or_exit(config), delete):
        fail(f"no workload registered for {container_id}")
    console.print(f"removed {container_id[:12]}")


@app.command("load")
def load_file(
    path: Path = typer.Argument(..., help="YAML file in the collector.workloads_file format"),
    config: Path | None = ConfigOpt,
) -> None:
    """Put every entry of a workloads YAML file into the registry."""
    from collector.workloads import WorkloadFileError, seed_from_file

    try:
        changed = _run(settings_or_exit(config), lambda kv: seed_from_file(kv, str(path)))
    except WorkloadFileError as exc:
        fail(str(exc), 2)
    console.print(f"{changed} workloads written")
