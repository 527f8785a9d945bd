"""podman and CRI-O from their on-disk state (containers/storage), with no
daemon: podman has none unless its service runs, and CRI-O's state is all a
DaemonSet needs to mount.

What is read (all written before the container's process starts):
- ``<graphroot>/<driver>-containers/containers.json`` (and the transient
  store's ``volatile-containers.json`` under the runroot): id, names, and the
  creator's metadata JSON (podman: ``image-name``, ``name``; CRI-O:
  ``image-name`` — the user's reference —, ``metadata-name``);
- ``<…-containers>/<id>/userdata/config.json`` (CRI-O writes it under both
  roots): the OCI spec's annotations (``io.container.manager`` is ``libpod``
  or ``cri-o``; CRI-O copies the kubelet's ``io.kubernetes.*`` labels there);
- podman's event log, when podman logs events to a file
  (``/run/libpod/events/events.log``): a container's labels are the
  ``Attributes`` of its ``create`` event (containers.json has none).

Invariants:
- polled by ``stat`` (inode, size, mtime): an unchanged file costs one stat;
  :meth:`StorageSource.lookup` re-reads at once, so an unknown cgroup is
  answered without waiting for the next poll;
- the parsing functions are pure; an unreadable file or entry is skipped and
  logged once per change, never fatal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from collector.identity import ANY
from collector.runtimes import Seen, Sink, Skipped, seen
from collector.runtimes.kubernetes import CRIO_TYPE, pod_of

log = logging.getLogger("vigil.collector.runtimes")

CONTAINER_MANAGER = "io.container.manager"
_INDEXES = ("containers.json", "volatile-containers.json")


class Entry(NamedTuple):
    """One container of containers.json."""

    id: str
    names: tuple[str, ...]
    metadata: Mapping[str, Any]
    directory: Path  # the ``…-containers`` directory holding its userdata


def parse_index(text: str, directory: Path) -> list[Entry]:
    """containers.json → entries; an entry whose metadata is not JSON keeps empty metadata."""
    out = []
    for item in json.loads(text) or []:
        if not isinstance(item, dict) or not item.get("id"):
            continue
        try:
            meta = json.loads(item.get("metadata") or "{}")
        except ValueError:
            meta = {}
        out.append(
            Entry(str(item["id"]), tuple(item.get("names") or ()), meta if isinstance(meta, dict) else {}, directory)
        )
    return out


def runtime_of(annotations: Mapping[str, str]) -> str:
    """Who made the container: ``io.container.manager`` is ``libpod`` or ``cri-o``."""
    manager = annotations.get(CONTAINER_MANAGER, "")
    if manager == "cri-o" or (not manager and CRIO_TYPE in annotations):
        return "cri-o"
    return "podman"


def seen_of(entry: Entry, annotations: Mapping[str, str], labels: Mapping[str, str], node: str) -> Seen:
    """A containers.json entry and its OCI annotations → what Vigil registers."""
    runtime = runtime_of(annotations)
    pod = pod_of(annotations, labels)  # not the metadata's pod-name: CRI-O puts the sandbox name there
    image = pod.image or str(entry.metadata.get("image-name") or "")
    own = str(entry.metadata.get("metadata-name") or entry.metadata.get("name") or "") or next(iter(entry.names), "")
    return seen(entry.id, runtime, node, image, pod, own, labels)


def labels_from_events(lines: list[bytes], into: dict[str, dict[str, str]]) -> None:
    """podman's event log lines → container id → labels (from create/init/start events)."""
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("Type") != "container" or not event.get("ID"):
            continue
        attrs = event.get("Attributes")
        if event.get("Status") in ("create", "init", "start") and isinstance(attrs, dict):
            into[str(event["ID"])] = {str(k): str(v) for k, v in attrs.items()}
        elif event.get("Status") == "remove":
            into.pop(str(event["ID"]), None)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class StorageSource:
    """podman and/or CRI-O containers from one containers/storage root."""

    def __init__(
        self,
        runtimes: set[str],
        graphroot: str,
        runroot: str,
        node: str,
        events_log: str = "",
        poll: float = 0.25,
    ) -> None:
        self.runtimes = runtimes  # {"podman"}, {"cri-o"} or both: entries of others are ignored
        self.runtime = "+".join(sorted(runtimes))
        self.where = graphroot
        self.roots = [Path(graphroot), Path(runroot)]
        self.node = node
        self.events_log = Path(events_log) if events_log else None
        self.poll = poll
        self._stats: dict[Path, tuple[int, int, int] | None] = {}
        self._entries: dict[str, Entry] = {}
        self._labels: dict[str, dict[str, str]] = {}
        self._log_offset = 0
        self._reported: dict[str, Seen] = {}
        self._dirty = False

    def serves(self, runtime: str) -> bool:
        return runtime in self.runtimes or runtime == ANY

    def _indexes(self) -> list[Path]:
        return [f for root in self.roots for f in sorted(root.glob("*-containers/*")) if f.name in _INDEXES]

    def _refresh(self) -> bool:
        """Re-read what changed (the next report then runs); True when something did."""
        changed = self._read_events_log()
        indexes = self._indexes()
        stats = {f: _stat(f) for f in indexes}
        if stats == self._stats and not changed:
            return False
        self._dirty = True
        if stats != self._stats:
            entries: dict[str, Entry] = {}
            for f in indexes:
                try:
                    entries.update((e.id, e) for e in parse_index(f.read_text(), f.parent))
                except (OSError, ValueError) as exc:
                    log.warning("containers/storage: cannot read %s: %s", f, exc)
                    return False  # keep what we had: a half-written file is re-read on the next poll
            self._stats, self._entries = stats, entries
        return True

    def _read_events_log(self) -> bool:
        if self.events_log is None:
            return False
        try:
            size = os.stat(self.events_log).st_size
            if size < self._log_offset:  # rotated
                self._log_offset = 0
            if size == self._log_offset:
                return False
            with open(self.events_log, "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read(size - self._log_offset)
        except OSError:
            return False
        complete = data.rfind(b"\n") + 1  # a line being written waits for the next poll
        self._log_offset += complete
        labels_from_events(data[:complete].splitlines(), self._labels)
        return complete > 0

    def _seen(self, entry: Entry) -> Seen | None:
        annotations: dict[str, str] = {}
        for directory in (entry.directory, *(r / entry.directory.name for r in self.roots)):
            path = directory / entry.id / "userdata" / "config.json"
            try:
                spec = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            annotations = {str(k): str(v) for k, v in (spec.get("annotations") or {}).items()}
            break
        found = seen_of(entry, annotations, self._labels.get(entry.id, {}), self.node)
        runtime = found.runtime if isinstance(found, Skipped) else found.source
        return found if runtime in self.runtimes else None

    async def lookup(self, container_id: str) -> Seen | None:
        self._refresh()
        entry = self._entries.get(container_id)
        return self._seen(entry) if entry is not None else None

    async def run(self, sink: Sink) -> None:
        log.info("%s: following %s", self.runtime, self.where)
        self._dirty = True  # report what is there at start
        while True:
            self._refresh()
            if self._dirty:  # changed since the last report (a lookup may have read it first)
                self._dirty = False
                await self._report(sink)
            await asyncio.sleep(self.poll)

    async def _report(self, sink: Sink) -> None:
        for cid in [c for c in self._reported if c not in self._entries]:
            del self._reported[cid]
            await sink.gone(cid)
        for cid, entry in self._entries.items():
            found = self._seen(entry)
            if found is not None and self._reported.get(cid) != found:
                self._reported[cid] = found
                await sink.seen(found)

    async def close(self) -> None:
        return None
