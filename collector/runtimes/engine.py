"""The Docker Engine API, as dockerd serves it and podman's service does
(``podman system service``, the ``podman.socket`` unit): list at start, then
the container event stream; one inspect per container.

Client: aiodocker (asyncio, maintained; docs/collector.md says why).

Invariants:
- the event stream is subscribed to *before* the list, so a container created
  in between is not missed (it may be reported twice: the registry write is
  idempotent);
- a stream that ends (the daemon restarted) is reopened with a backoff, and
  the list is taken again;
- :func:`workload_of` is pure over the inspect document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from collector.identity import ANY
from collector.runtimes import Seen, Sink, seen
from collector.runtimes.kubernetes import pod_of

log = logging.getLogger("vigil.collector.runtimes")

_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{64}$")
_STARTED = {"create", "start", "restart", "unpause"}
_GONE = {"die", "destroy", "remove", "cleanup"}


def workload_of(doc: Mapping[str, Any], runtime: str, node: str, image: str = "") -> Seen:
    """An inspect document (``GET /containers/{id}/json``) → what Vigil registers.

    ``image`` overrides ``Config.Image`` (the caller resolved an image id to a name)."""
    config = doc.get("Config") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    ref = image or str(config.get("Image") or doc.get("ImageName") or "")
    if _IMAGE_ID.match(ref):
        ref = ""  # an image id names no image
    name = str(doc.get("Name", "")).lstrip("/")
    return seen(str(doc.get("Id", "")), runtime, node, ref, pod_of({}, labels), name, labels)


class EngineSource:
    """One Engine API socket (docker's or podman's)."""

    def __init__(self, runtime: str, socket: str, node: str, retry: float = 1.0) -> None:
        self.runtime = runtime
        self.where = socket
        self.node = node
        self.retry = retry
        self._docker: Any = None

    def serves(self, runtime: str) -> bool:
        return runtime in (self.runtime, ANY)

    def _client(self) -> Any:
        if self._docker is None:
            import aiodocker

            self._docker = aiodocker.Docker(url="unix://" + self.where)
        return self._docker

    async def lookup(self, container_id: str) -> Seen | None:
        import aiodocker

        try:
            doc = (await self._client().containers.get(container_id))._container
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                log.warning("%s: inspect %s: %s", self.runtime, container_id[:12], exc)
            return None
        except Exception as exc:  # noqa: BLE001 - daemon unreachable, timed out
            log.debug("%s: inspect %s: %s", self.runtime, container_id[:12], exc)
            return None
        return await self._resolved(doc)

    async def _resolved(self, doc: Mapping[str, Any]) -> Seen:
        ref = str((doc.get("Config") or {}).get("Image") or "")
        image = ""
        if _IMAGE_ID.match(ref):  # run by image id: name it by the image's first tag or digest
            with contextlib.suppress(Exception):
                info = await self._client().images.inspect(ref)
                names = list(info.get("RepoTags") or []) + list(info.get("RepoDigests") or [])
                image = next((n for n in names if not n.startswith("<none>")), "")
        return workload_of(doc, self.runtime, self.node, image)

    async def run(self, sink: Sink) -> None:
        while True:
            try:
                await self._follow(sink)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - daemon down or restarting: retry
                log.warning("%s (%s): %s; retrying in %.0f s", self.runtime, self.where, exc, self.retry)
            await self._reset()
            await asyncio.sleep(self.retry)

    async def _follow(self, sink: Sink) -> None:
        docker = self._client()
        events = docker.events.subscribe(filters=json.dumps({"type": ["container"]}))
        for summary in await docker.containers.list():
            found = await self.lookup(summary.id)
            if found is not None:
                await sink.seen(found)
        log.info("%s: following %s", self.runtime, self.where)
        while (event := await events.get()) is not None:
            action = str(event.get("Action") or event.get("status") or "").split(":")[0]
            cid = str((event.get("Actor") or {}).get("ID") or event.get("id") or "")
            if not cid:
                continue
            if action in _STARTED:
                found = await self.lookup(cid)
                if found is not None:
                    await sink.seen(found)
            elif action in _GONE:
                await sink.gone(cid)
        raise ConnectionError("event stream ended")

    async def _reset(self) -> None:
        docker, self._docker = self._docker, None
        if docker is not None:
            with contextlib.suppress(Exception):
                await docker.events.stop()
            with contextlib.suppress(Exception):
                await docker.close()

    async def close(self) -> None:
        await self._reset()
