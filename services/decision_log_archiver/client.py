"""Client side of the archive's read-only SQL: through the running archiver
(NATS request/reply on ``vigil.query.decisions``), or, when no archiver
answers, directly on the DuckDB file opened read-only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb

from contracts.codec import encode_json
from contracts.subjects import QUERY_DECISIONS
from services.decision_log_archiver import query
from services.runtime.bus import Bus, connect, data_path, unsubscribe_quietly
from services.runtime.errors import VigilError
from services.runtime.settings import Settings


class NoArchiver(VigilError):
    """No archiver answered on the query subject."""


async def ask(bus: Bus, request: query.QueryRequest, timeout: float = 60.0) -> query.QueryResult:
    """Send one request to the archiver and gather its chunked reply."""
    inbox = bus.nc.new_inbox()
    sub = await bus.nc.subscribe(inbox)
    try:
        await bus.nc.publish(QUERY_DECISIONS, encode_json(request), reply=inbox)
        result = query.QueryResult([], [], [])
        while True:
            try:
                msg = await sub.next_msg(timeout)
            except Exception as exc:  # noqa: BLE001 - nats TimeoutError
                raise VigilError(f"the archiver did not answer within {timeout}s") from exc
            if msg.headers and msg.headers.get("Status") == "503":
                raise NoArchiver("no decision-log-archiver is running")
            chunk = query.reply_decoder.decode(msg.data)
            if chunk.error:
                raise (query.QueryRefused if chunk.refused else query.QueryFailed)(chunk.error)
            result.columns = chunk.columns or result.columns
            result.types = chunk.types or result.types
            result.rows.extend(tuple(r) for r in chunk.rows)
            result.truncated = result.truncated or chunk.truncated
            if not chunk.more:
                return result
    finally:
        await unsubscribe_quietly(sub)


def direct(settings: Settings, request: query.QueryRequest) -> query.QueryResult:
    """Run the request on the archive file itself (only possible while no archiver holds it)."""
    path = data_path(settings, settings.archive.path)
    if not path.exists():
        raise VigilError(f"no archive at {path}")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise VigilError(f"cannot open {path} ({exc}); is an archiver running without answering on the bus?") from exc
    try:
        if request.export:
            return query.export_parquet(con.cursor(), Path(request.export))
        return query.run(con.cursor(), request.sql, request.max_rows)
    finally:
        con.close()


CONNECT_TIMEOUT = 5.0


async def _via_bus(settings: Settings, request: query.QueryRequest) -> query.QueryResult:
    try:  # an unreachable bus would be retried forever: give up and use the file
        bus = await asyncio.wait_for(connect(settings, start_embedded=False, name="vigil-decisions"), CONNECT_TIMEOUT)
    except TimeoutError as exc:
        raise NoArchiver(f"no NATS server answered within {CONNECT_TIMEOUT}s") from exc
    try:
        return await ask(bus, request)
    finally:
        await bus.close()


def run(settings: Settings, request: query.QueryRequest) -> tuple[query.QueryResult, str]:
    """The answer and where it came from ("archiver" or "file")."""
    try:
        return asyncio.run(_via_bus(settings, request)), "archiver"
    except (query.QueryRefused, query.QueryFailed):
        raise
    except (NoArchiver, OSError):
        pass
    except VigilError as exc:
        if "no NATS server" not in str(exc):
            raise
    return direct(settings, request), "file"
