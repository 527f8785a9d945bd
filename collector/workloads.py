"""The workload registry as the collector sees it: an in-memory map kept in
sync with the NATS KV bucket (watched), seeded from ``collector.workloads_file``.

Invariants:
- the bucket is the source of truth; the map is a cache updated only by the
  watch (a put from any writer shows up here, a delete removes it);
- lookups also accept a container id prefix of >= 12 characters (docker's
  short ids) registered by an operator;
- :func:`load_file` is pure over the YAML text and names the bad entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import yaml

from contracts import workloads as wl
from contracts.errors import VigilError
from contracts.subjects import WORKLOAD_BUCKET
from contracts.workloads import Workload

log = logging.getLogger("vigil.collector.workloads")


class WorkloadFileError(VigilError, ValueError):
    pass


def parse_file(text: str, origin: str = "workloads file") -> list[Workload]:
    """YAML ``workloads: [{container_id, image | image_name+image_tag, pod, namespace, name}]``."""
    doc = yaml.safe_load(text) or {}
    items = doc.get("workloads", []) if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise WorkloadFileError(f"{origin}: expected a list under 'workloads'")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("container_id"):
            raise WorkloadFileError(f"{origin}: entry {i} needs container_id")
        out.append(from_fields(dict(item), source="file"))
    return out


def from_fields(item: dict[str, Any], source: str) -> Workload:
    image = item.pop("image", "")
    if image:
        name, tag = wl.parse_image(image)
    else:
        name, tag = wl.normalize_name(str(item.get("image_name", ""))), str(item.get("image_tag", ""))
    if not name:
        raise WorkloadFileError(f"workload {item.get('container_id')}: needs image or image_name")
    return Workload(
        container_id=str(item["container_id"]),
        image_name=name,
        image_tag=str(item.get("image_tag") or tag),
        pod=str(item.get("pod", "")),
        namespace=str(item.get("namespace", "")),
        name=str(item.get("name", "")),
        source=source,
    )


async def bucket(js: Any) -> Any:
    try:
        return await js.key_value(WORKLOAD_BUCKET)
    except Exception:  # noqa: BLE001 - create on first use
        from nats.js.api import KeyValueConfig

        return await js.create_key_value(KeyValueConfig(bucket=WORKLOAD_BUCKET, history=5))


async def put(kv: Any, w: Workload) -> None:
    await kv.put(wl.key(w.container_id), wl.encode(w))


async def seed_from_file(kv: Any, path: str) -> int:
    """Put every entry of the file that the bucket does not already hold as is."""
    items = parse_file(Path(path).read_text(), path)
    changed = 0
    for w in items:
        try:
            entry = await kv.get(wl.key(w.container_id))
            if entry.value == wl.encode(w):
                continue
        except Exception:  # noqa: BLE001 - not there yet
            pass
        await put(kv, w)
        changed += 1
    return changed


class Registry:
    """container id → Workload, updated from the bucket's watch.

    The watch is restarted whenever the connection reconnected (a NATS restart
    or failover): nats-py's ordered consumer would otherwise notice the loss
    only after ~20 s of missed heartbeats, a blind window in which containers
    started meanwhile stay unnamed. A restarted watch replays every entry; the
    map is swapped for the replayed one, so deletions missed meanwhile count.
    """

    def __init__(self) -> None:
        self.by_id: dict[str, Workload] = {}
        self._short: dict[str, Workload] = {}  # entries registered under a short id (docker's 12+ chars)
        self.version = 0  # bumped on every change: caches keyed on it are invalidated
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def get(self, container_id: str) -> Workload | None:
        found = self.by_id.get(container_id)
        if found is not None or not self._short or len(container_id) < 12:
            return found
        for cid, w in self._short.items():
            if len(cid) >= 12 and container_id.startswith(cid):
                return w
        return None

    def items(self) -> list[Workload]:
        return list(self.by_id.values())

    def apply(self, key: str, value: bytes | None) -> None:
        if value:
            try:
                w = wl.decode(value)
            except Exception as exc:  # noqa: BLE001 - a bad entry is skipped, not fatal
                log.warning("workload %s: unreadable entry: %s", key, exc)
                return
            self.by_id[w.container_id] = w
            if len(w.container_id) < 64:
                self._short[w.container_id] = w
        else:
            cid = key if key in self.by_id else next((c for c in self.by_id if wl.key(c) == key), None)
            if cid is not None:
                del self.by_id[cid]
                self._short.pop(cid, None)
        self.version += 1

    async def start(self, kv: Any, nc: Any = None) -> None:
        """Follow the bucket; ``nc`` (the connection) lets a reconnect restart the watch."""
        self._task = asyncio.create_task(self._follow(kv, nc))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ready.wait(), 5)

    async def _follow(self, kv: Any, nc: Any) -> None:
        def reconnects() -> int:
            return int(nc.stats.get("reconnects", 0)) if nc is not None else 0

        seen = reconnects()
        while True:
            try:
                watcher = await kv.watchall()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the bus is still coming back
                log.warning("workload registry: cannot watch the bucket (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            reader = asyncio.create_task(self._run(watcher, replay=self.ready.is_set()))
            try:
                while not reader.done() and reconnects() == seen:
                    await asyncio.sleep(0.25)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            if reconnects() != seen:
                seen = reconnects()
                self.restarts += 1
                log.info("workload registry: connection re-established, watch restarted")

    async def _run(self, watcher: Any, replay: bool) -> None:
        fresh: dict[str, bytes] | None = {} if replay else None
        try:
            async for entry in watcher:
                if entry is None:
                    if fresh is not None:  # the replay is complete: it is the registry now
                        self.by_id, self._short = {}, {}
                        for key, value in fresh.items():
                            self.apply(key, value)
                        self.version += 1
                        fresh = None
                    self.ready.set()
                    continue
                deleted = entry.operation in ("DEL", "PURGE")
                if fresh is not None:
                    if deleted:
                        fresh.pop(entry.key, None)
                    else:
                        fresh[entry.key] = entry.value
                    continue
                self.apply(entry.key, None if deleted else entry.value)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
