"""Decision intake sidecar: a unix stream socket taking ndjson, one decision per line,
and/or the follower of Gatekeeper's disk-export directory (:mod:`directory`).

Protocol: the client writes lines; the intake answers every line, in order,
with one JSON line: ``{"ok":true,"id":…}`` (``"duplicate":true`` when
JetStream already had that id) or ``{"ok":false,"reason":…}``.

Invariants:

- A line is answered ``ok`` only after JetStream stored it (publish ack).
  Lines are pipelined: the accepted lines read in one chunk go out as few
  messages as fit (consecutive lines in one DecisionBatch, half the server's
  max payload at most, :func:`core.publications`) through the windowed
  :class:`~services.runtime.bus.Publisher`, flushed once, then the chunk's
  answers are written. The bus's cost per message is paid per batch, not per line.
- ``Nats-Msg-Id`` is ``decision:<decisionId>`` (``audit_started:<auditId>`` …)
  for a line sent alone, a hash of the lines' ids for a batch, so the same
  lines re-sent after a lost answer are stored once; a re-send cut differently
  is stored again, and the archive and the audit files still keep each
  decision once (by id). ``duplicate`` in an answer is the message's.
- A bad line (invalid UTF-8 or JSON, wrong types, longer than
  ``decision_intake.max_line_bytes``) is answered with its reason and counted;
  it never closes the connection or stops the intake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec

from contracts import intake as normaliser
from contracts.codec import encode_json
from contracts.subjects import INTAKE_DECISIONS
from services.decision_intake import core
from services.runtime.bus import Bus, PubAck, Publisher, data_path
from services.runtime.errors import PublishError, VigilError
from services.runtime.settings import Settings

log = logging.getLogger("vigil.intake")
READ_CHUNK = 256 * 1024
_answer = msgspec.json.Encoder()


class IntakeError(VigilError):
    """The intake cannot start (socket path in use, bad mode)."""


def socket_path(settings: Settings, override: str | Path | None = None) -> Path:
    raw = str(override or settings.decision_intake.socket or "intake.sock")
    return data_path(settings, raw)


class Intake:
    """Serves one unix socket; one windowed publisher per client connection."""

    def __init__(
        self, settings: Settings, bus: Bus, path: Path, mode: int | None = None, counters: Counter[str] | None = None
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.path = path
        self.mode = int(settings.decision_intake.socket_mode, 8) if mode is None else mode
        self.max_line = settings.decision_intake.max_line_bytes
        self.max_batch_bytes = max(1, bus.nc.max_payload // 2)  # a DecisionBatch stays well below the server's limit
        self.counters: Counter[str] = Counter() if counters is None else counters
        self._server: asyncio.AbstractServer | None = None
        self._clients: dict[asyncio.Task[None], tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self._stopping = False

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_socket(self.path)
        old = os.umask(0o777 & ~self.mode)  # the socket is born with the mode: no window of wider access
        try:
            self._server = await asyncio.start_unix_server(self._serve_client, path=str(self.path), limit=READ_CHUNK)
        finally:
            os.umask(old)
        os.chmod(self.path, self.mode)
        log.info("decision intake listening on %s (mode %o)", self.path, self.mode)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening, let connected clients finish their current chunk, then close them."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for reader, writer in self._clients.values():
            transport = writer.transport
            if isinstance(transport, asyncio.ReadTransport):
                with contextlib.suppress(Exception):
                    transport.pause_reading()  # nothing more comes in …
            reader.feed_eof()  # … each client gets the answers of what was read, then EOF
        if self._clients:
            _, late = await asyncio.wait(list(self._clients), timeout=grace)
            for task in late:
                task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters["connections"] += 1
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = (reader, writer)
        pub = Publisher(self.bus.nc, window=self.settings.nats.publish_window)
        try:
            await pub.start()
            async for results in self._chunks(reader):
                writer.write(await self._store(pub, results))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.counters["connections_lost"] += 1
        finally:
            with contextlib.suppress(Exception):  # the bus may be closing with us
                await pub.close()
            self._clients.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _chunks(self, reader: asyncio.StreamReader) -> AsyncIterator[list[normaliser.Result]]:
        """Results of the complete lines of each read chunk; an over-long line is skipped to its end."""
        rest = b""
        skipping = False
        while chunk := await reader.read(READ_CHUNK):
            lines, rest = core.split_lines(rest + chunk)
            results: list[normaliser.Result] = []
            for line in lines:
                if skipping:
                    results.append(normaliser.too_long(self.max_line))
                    skipping = False
                else:
                    results.append(self._validate(line))
            if len(rest) > self.max_line:
                rest, skipping = b"", True
            if results:
                yield results
        if self._stopping:
            return  # a line cut by shutdown is not answered: the client sends it again
        if skipping:
            yield [normaliser.too_long(self.max_line)]
        elif rest.strip():
            yield [self._validate(rest)]

    def _validate(self, line: bytes) -> normaliser.Result:
        if len(line) > self.max_line:
            return normaliser.too_long(self.max_line)
        return normaliser.normalise(line)

    async def _store(self, pub: Publisher, results: list[normaliser.Result]) -> bytes:
        """Publish the accepted lines of one chunk (several per message, as DecisionBatches),
        wait for their acks, return the chunk's answers."""
        accepted = [r for r in results if isinstance(r, normaliser.Accepted)]
        sent = core.publications(accepted, self.max_batch_bytes)
        for publication in sent:
            await pub.publish(INTAKE_DECISIONS, publication.data, publication.msg_id)
        self.counters["messages"] += len(sent)
        failure = ""
        acks: list[PubAck] = []
        try:
            acks = await pub.flush()
        except PublishError as exc:
            failure = f"not stored, send again: {exc}"
        per_line = (ack for publication, ack in zip(sent, acks, strict=False) for _ in range(publication.count))
        return b"".join(self._answers(results, per_line, failure))

    def _answers(self, results: list[normaliser.Result], acks: Iterator[PubAck], failure: str) -> list[bytes]:
        out: list[bytes] = []
        for result in results:
            if isinstance(result, normaliser.Rejected):
                self.counters[f"rejected_{result.kind}"] += 1
                self.counters["rejected"] += 1
                out.append(_answer.encode({"ok": False, "reason": result.reason}) + b"\n")
            elif failure:
                self.counters["not_stored"] += 1
                out.append(_answer.encode({"ok": False, "id": _id(result), "reason": failure}) + b"\n")
            else:
                ack = next(acks)
                self.counters["accepted"] += 1
                self.counters["duplicates"] += ack.duplicate
                reply = (
                    {"ok": True, "id": _id(result), "duplicate": True}
                    if ack.duplicate
                    else {"ok": True, "id": _id(result)}
                )
                out.append(_answer.encode(reply) + b"\n")
        return out


def _id(result: normaliser.Accepted) -> str:
    message = result.message
    return message.id or result.msg_id


def _remove_stale_socket(path: Path) -> None:
    """A socket file left by a dead intake is removed; a live one is an error."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise IntakeError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise IntakeError(f"another intake already listens on {path}")


async def serve(
    settings: Settings,
    path: Path | None,
    stopping: asyncio.Event,
    bus: Bus | None = None,
    gatekeeper_dir: Path | None = None,
) -> Counter[str]:
    """Run the intake until ``stopping`` is set: the socket at ``path`` and/or the follower of
    Gatekeeper's export directory ``gatekeeper_dir``. Returns the counters (also in the
    heartbeat bucket, so `vigil status` shows them)."""
    from services.decision_intake.directory import Follower
    from services.runtime.bus import connect

    own_bus = bus is None
    bus = bus or await connect(settings, name="vigil-intake")
    counters: Counter[str] = Counter()
    samples: dict[str, list[str]] = {}
    intake = Intake(settings, bus, path, counters=counters) if path is not None else None
    tasks: list[asyncio.Task[None]] = []
    try:
        await bus.ensure_streams()
        if intake is not None:
            await intake.start()
        if gatekeeper_dir is not None:
            follower = Follower(settings, bus, gatekeeper_dir, counters, samples)
            tasks.append(asyncio.create_task(follower.run(stopping)))
            log.info("following Gatekeeper's export directory %s", follower.root)
        tasks.append(asyncio.create_task(_heartbeats(bus, counters, samples, stopping)))
        await _until_stopped(stopping, tasks)
    finally:
        stopping.set()
        if intake is not None:
            await intake.stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        if own_bus:
            await bus.close()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
    return counters


async def _until_stopped(stopping: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Wait for ``stopping``, or for a task that ended early (an error: it is raised by serve)."""
    waiter = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _heartbeats(bus: Bus, counters: Counter[str], samples: dict[str, list[str]], stopping: asyncio.Event) -> None:
    import time

    from contracts.decisions import Heartbeat
    from contracts.subjects import HEARTBEAT_BUCKET

    try:
        kv = await bus.js.key_value(HEARTBEAT_BUCKET)
    except Exception:  # noqa: BLE001 - heartbeats are best effort (bucket made by `vigil up`)
        return
    started = time.time()
    key = f"decision-intake.{socket.gethostname()}-{os.getpid()}"
    while not stopping.is_set():
        beat = Heartbeat(
            service="decision-intake",
            instance=key.split(".", 1)[1],
            host=socket.gethostname(),
            pid=os.getpid(),
            started=started,
            updated=time.time(),
            counters=dict(counters),
            samples={name: list(kept) for name, kept in samples.items()},
        )
        with contextlib.suppress(Exception):
            await kv.put(key, encode_json(beat))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), float(bus.settings.telemetry.heartbeat_interval))
    with contextlib.suppress(Exception):
        await kv.delete(key)
