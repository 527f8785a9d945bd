"""decision-log-archiver adapter: the single writer of the DuckDB archive.

Invariants:

- Rows are staged while a fetched batch is handled and written in
  :meth:`Archiver.commit`, in one transaction together with the stream
  position; the runner acks only after that. A failing commit raises, the
  runner retries it with exponential backoff and jitter and acks nothing
  meanwhile. A failed write may leave DuckDB's instance invalidated, so the
  connection is dropped and reopened (lazily, also at start: an unwritable
  archive directory delays the archive, it never stops the service).
- Upserts on the decision id make a redelivered decision a no-op, so the
  app is not ``stateful``: the runner
  never skips a redelivery by position (after a crash JetStream delivers new
  messages before the unacked ones come back, so a position can run ahead of
  decisions never committed). The stored position is informative: the highest
  sequence committed.
- Python validates each payload (msgspec, dead-lettering what is no
  decision) and keeps it as received; the batch reaches DuckDB as one Arrow
  table of (id, time, payload, sequence) and DuckDB parses the payloads
  itself in one ``INSERT … SELECT`` (``core.FROM_PAYLOADS``). Only when that
  meets an id already archived (a redelivery) is the transaction rolled back
  and the batch written again as ``INSERT OR REPLACE`` (the upsert). Same rows
  either way; the plain insert skips the conflict handling that costs most,
  and DuckDB's parser costs a fraction of building columns in Python
  (docs/decisions.md). Should DuckDB's JSON reader refuse a payload msgspec
  accepted, the batch is written from columns built in Python instead: a
  good decision is never lost to a parser difference.
- Payloads on ``vigil.decisions.intake`` may be Gatekeeper-shaped; they are
  read with the intake's own pure normaliser. A message may also be a
  DecisionBatch (the intake's socket reads): each entry is read as if it had
  come alone, and a pull is bounded in bytes (:data:`FETCH_MAX_BYTES`) as well
  as in messages.
- Read-only SQL is served on ``vigil.query.decisions`` (request/reply, core
  NATS on the runner's own connection) from cursors of the writer's
  connection, each in a read-only transaction: the only way to query a
  DuckDB file while a process writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa  # type: ignore[import-untyped]
from nats.aio.msg import Msg
from opentelemetry import metrics

from contracts.codec import encode_json
from contracts.decisions import Decision, batch_entries
from contracts.intake import Rejected, normalise
from contracts.subjects import DECISIONS, QUERY_DECISIONS, ConsumerSpec
from services.decision_log_archiver import core, query
from services.runtime.bus import Bus, data_path, unsubscribe_quietly
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing, each_entry
from services.runtime.settings import Settings

log = logging.getLogger("vigil.archiver")
DURABLE = "decision-log-archiver"
# WAL size that triggers a checkpoint (DuckDB's default is 16MB). Each checkpoint
# compresses the new rows and writes the primary-key index again; at 16MB that was
# about a third of the archive's write time. A larger WAL costs only a longer replay
# when the archive is opened after a crash (docs/decisions.md).
CHECKPOINT_WAL = "64MB"
FETCH_MAX_BYTES = 32 << 20


class Archiver(AppBase):
    name = "decision-log-archiver"
    consumers = (ConsumerSpec(DECISIONS, DURABLE),)
    queue_fetch = True  # batches of up to 122,880 one-decision messages: nats-py's per-message wait cost a third

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.fetch_batch = settings.archive.batch_size
        self.fetch_linger = float(settings.archive.flush_interval)  # a trickle is committed in batches, not one by one
        # Messages may carry one decision or a DecisionBatch of hundreds: a batch is bounded
        # in bytes too (about a row group of batched decisions), or a backlog of batches
        # would be pulled in gigabytes.
        self.fetch_max_bytes = FETCH_MAX_BYTES
        self.path = data_path(settings, settings.archive.path)
        self.con: duckdb.DuckDBPyConnection | None = None
        self.staged: dict[str, core.Staged] = {}
        self.backlog = 0
        self._bus: Bus | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Any = None
        self._next_open = 0.0
        self._position_rows: set[str] = set()  # streams whose position row exists in this connection's file

    # --- life cycle ------------------------------------------------------------------

    async def start(self, bus: Bus) -> None:
        self._bus = bus
        self._try_open()  # an unwritable archive is retried (commit, idle), never fatal
        self._sub = await bus.nc.subscribe(QUERY_DECISIONS, queue=DURABLE, cb=self._on_query)
        self._tasks.append(asyncio.create_task(self._watch_backlog(bus)))
        meter = metrics.get_meter("vigil.decision-log-archiver")
        meter.create_observable_gauge(
            "vigil.archive.backlog",
            callbacks=[lambda _opts: [metrics.Observation(self.backlog)]],
            description="decisions in DECISIONS not yet committed to the archive",
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._sub is not None:
            await unsubscribe_quietly(self._sub)
        self._close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        if self.con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self.path))
            try:
                con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_WAL}'")
                for statement in core.create_statements():
                    con.execute(statement)
                self._migrate(con)
            except Exception:
                con.close()
                raise
            self.con = con
            self.counters["archive_opened"] += 1
        return self.con

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        """Bring an archive written by an older Vigil to the current columns, in one transaction."""
        names = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ?",
            [core.TABLE],
        ).fetchall()
        statements = core.migration_statements({name for (name,) in names})
        if not statements:
            return
        con.execute("BEGIN")
        try:
            for statement in statements:
                con.execute(statement)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        self.counters["archive_migrated"] += 1
        log.info("archive %s: %d schema change(s) applied", self.path, len(statements))

    def _try_open(self) -> None:
        self._next_open = time.monotonic() + float(self.settings.archive.retry_max)
        try:
            self._open()
        except Exception as exc:  # noqa: BLE001 - reported, counted, retried
            self.counters["sink_failures"] += 1
            log.warning("archive %s unavailable (%s); retrying", self.path, exc)

    async def idle(self) -> Sequence[Outgoing]:
        """Nothing to write: still reopen a broken archive now and then, so queries and
        the sink_failures counter tell the operator about it before the next decision."""
        if self.con is None and time.monotonic() >= self._next_open:
            self._try_open()
        return ()

    def _close(self) -> None:
        self._position_rows = set()
        if self.con is not None:
            with contextlib.suppress(Exception):
                self.con.close()
            self.con = None

    # --- the stream --------------------------------------------------------------------

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            self._one(msg.data, msg.seq)
        except Invalid:
            entries = batch_entries(msg.data)  # not one decision: a DecisionBatch, or invalid after all
            if entries is None:
                raise
            each_entry(entries, lambda data: self._one(data, msg.seq))
        return ()

    def _one(self, data: bytes, seq: int) -> None:
        try:
            row = core.row_decoder.decode(data)  # hot path: Vigil's tagged decision
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            self._handle_other(data, seq)
            return
        self._stage(row, data, seq)

    def _handle_other(self, data: bytes, seq: int) -> None:
        """Gatekeeper-shaped payloads, audit markers, or invalid input (dead-lettered with its reason)."""
        result = normalise(data)
        if isinstance(result, Rejected):
            raise Invalid(result.reason)
        if isinstance(result.message, Decision):
            payload = encode_json(result.message)  # as the hot path reads it
            try:
                row = core.row_decoder.decode(payload)
            except msgspec.ValidationError as exc:  # valid for the contract, not for the archive (a BIGINT overflows)
                raise Invalid(f"decision cannot be archived: {exc}") from exc
            self._stage(row, payload, seq)

    def _stage(self, row: Any, data: bytes, seq: int) -> None:  # a core.Row
        """Add a decision to the batch, keyed by id: one insert may not carry the same key
        twice, and a later copy in the batch replaces an earlier one."""
        if not row.id:
            raise Invalid("decision id is empty")
        self.staged[row.id] = (data, row.time, seq)

    async def commit(self) -> None:
        if not self.staged and not self.positions:
            return
        try:
            self._write(self._open())
        except Exception:
            self.counters["sink_failures"] += 1
            self._close()  # a failed write can invalidate the instance: reopen on retry
            raise
        self.counters["archived"] += len(self.staged)
        self.counters["commits"] += 1
        self.staged = {}

    def _write(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("BEGIN")
        try:
            if self.staged:
                self._insert(con)
            created = [stream for stream, seq in self.positions.items() if self._store_position(con, stream, seq)]
            con.execute("COMMIT")
            self._position_rows.update(created)
        except Exception:
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            raise

    def _store_position(self, con: duckdb.DuckDBPyConnection, stream: str, seq: int) -> bool:
        """The stream position, in the same transaction as the rows. DuckDB's upsert costs
        ~5 ms a statement (measured), a plain UPDATE a fraction of it: upsert once per
        connection to create the row (True: created, once committed), update from then on."""
        if stream in self._position_rows:
            con.execute(f"UPDATE {core.POSITIONS} SET seq = greatest(seq, ?) WHERE stream = ?", [seq, stream])
            return False
        con.execute(
            f"INSERT INTO {core.POSITIONS} VALUES (?, ?) "
            "ON CONFLICT (stream) DO UPDATE SET seq = greatest(seq, excluded.seq)",
            [stream, seq],
        )
        return True

    def _insert(self, con: duckdb.DuckDBPyConnection) -> None:
        """The batch's rows, inside the open transaction: DuckDB parses the payloads
        (columns built in Python if its JSON reader refuses one), by plain insert, or by
        upsert when some id is archived already. A failed statement aborts the
        transaction: it is rolled back and begun again before the next way is tried."""
        sources = ((payload_table, core.FROM_PAYLOADS), (arrow_table, core.FROM_COLUMNS))
        upsert = False
        for build, select in sources:
            table = build(self.staged)
            try:
                try:
                    _insert_from(con, INSERT_NEW if not upsert else UPSERT, select, table)
                except duckdb.ConstraintException:
                    _restart(con)
                    upsert = True
                    self.counters["upsert_batches"] += 1
                    _insert_from(con, UPSERT, select, table)
                return
            except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
                if select is core.FROM_COLUMNS:
                    raise
                log.warning("DuckDB could not read a payload of the batch (%s); writing it from Python columns", exc)
                _restart(con)
                self.counters["python_column_batches"] += 1

    async def _watch_backlog(self, bus: Bus) -> None:
        interval = max(0.5, float(self.settings.telemetry.heartbeat_interval))
        while True:
            try:
                info = await bus.js.consumer_info(DECISIONS, DURABLE)
                self.backlog = info.num_pending + info.num_ack_pending + len(self.staged)
                self.counters["backlog"] = self.backlog
            except Exception as exc:  # noqa: BLE001 - a metric must not stop the service
                log.debug("backlog unavailable: %s", exc)
            await asyncio.sleep(interval)

    # --- read-only SQL endpoint ------------------------------------------------------

    async def _on_query(self, msg: Msg) -> None:
        if not msg.reply:
            return
        max_bytes = max(1024, self._max_payload() - 1024)
        try:
            request = query.request_decoder.decode(msg.data)
            cur = self._open().cursor()  # created on the loop thread, used by one worker thread
            if request.export:
                result = await asyncio.to_thread(query.export_parquet, cur, Path(request.export))
            else:
                result = await asyncio.to_thread(query.run, cur, request.sql, request.max_rows)
            chunks = list(query.reply_chunks(result, max_bytes))
            self.counters["queries"] += 1
        except query.QueryRefused as exc:
            self.counters["queries_refused"] += 1
            chunks = [query.error_reply(str(exc), refused=True)]
        except Exception as exc:  # noqa: BLE001 - every request gets an answer
            self.counters["queries_failed"] += 1
            chunks = [query.error_reply(f"{type(exc).__name__}: {exc}")]
        assert self._bus is not None
        for chunk in chunks:
            await self._bus.nc.publish(msg.reply, chunk)

    def _max_payload(self) -> int:
        return self._bus.nc.max_payload if self._bus is not None else 1 << 20


_ARROW_TYPES = {
    "BIGINT": pa.int64(),
    "BOOLEAN": pa.bool_(),
    "VARCHAR[]": pa.list_(pa.string()),
    "MAP(VARCHAR, VARCHAR)": pa.map_(pa.string(), pa.string()),
}
ARROW_SCHEMA = pa.schema(
    [(name, _ARROW_TYPES.get(sql, pa.string())) for name, sql in core.COLUMNS if name in core.STORED]
)
PAYLOAD_SCHEMA = pa.schema(
    [("id", pa.string()), ("time_ns", pa.int64()), ("payload", pa.string()), ("stream_seq", pa.int64())]
)
_NAMES = ", ".join(core.STORED)
INSERT_NEW = f"INSERT INTO {core.TABLE} ({_NAMES}) "
UPSERT = f"INSERT OR REPLACE INTO {core.TABLE} ({_NAMES}) "


def payload_table(staged: Mapping[str, core.Staged]) -> pa.Table:
    """A staged batch as (id, time_ns, payload, stream_seq): what :data:`core.FROM_PAYLOADS` reads."""
    values = staged.values()
    arrays = (
        list(staged),
        [time for _, time, _ in values],
        [data for data, _, _ in values],
        [seq for _, _, seq in values],
    )
    return pa.Table.from_arrays(
        [pa.array(a, type=t) for a, t in zip(arrays, PAYLOAD_SCHEMA.types, strict=True)], schema=PAYLOAD_SCHEMA
    )


def arrow_table(staged: Mapping[str, core.Staged]) -> pa.Table:
    """A staged batch as one Arrow table of the stored columns, built in Python (the fallback)."""
    arrays = [pa.array(values, type=t) for values, t in zip(core.columns(staged), ARROW_SCHEMA.types, strict=True)]
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def _insert_from(con: duckdb.DuckDBPyConnection, insert: str, select: str, table: pa.Table) -> None:
    """Run ``insert`` + ``select`` on ``table`` registered as :data:`core.STAGED`. The registration
    belongs to the open transaction: a rollback drops it, so it is undone here only on success."""
    con.register(core.STAGED, table)
    con.execute(insert + select)
    con.unregister(core.STAGED)


def _restart(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back a transaction a failed statement aborted, and begin a fresh one."""
    con.execute("ROLLBACK")
    con.execute("BEGIN")


def build(settings: Settings) -> Archiver:
    return Archiver(settings)
