"""Raw event history beyond retention: EVENTS messages archived as Parquet before compaction purges them.

With ``storage.archive_dir`` set, the learner that compacts a partition first writes the
messages it is about to purge to ``<dir>/day=YYYY-MM-DD/partition=<p>/events_<first>_<last>_<i>.parquet``
(DuckDB ``COPY … (FORMAT parquet, PARTITION_BY (day, partition))``; the day is the UTC
day of the batch's latest event time). A row is one EVENTS message as it was stored:
its stream sequence, subject, ``Nats-Msg-Id``, latest event time and the msgpack batch
bytes, so a rebuild from the archive applies exactly what the learner applied.

Invariants: a message is archived before it is purged (a crash in between archives it
again: readers keep one row per sequence); files are only ever added.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]
from nats.js import JetStreamContext

from contracts.events import MAX_TIME_HEADER
from contracts.headers import MSG_ID_HEADER
from services.runtime.log import read_messages

Row = tuple[int, str, str, int, bytes]  # seq, subject, msg id, latest event time (ns), batch bytes


async def archive_range(
    js: JetStreamContext, directory: Path, stream: str, subject: str, partition: int, upto: int
) -> int:
    """Archive every message of ``subject`` still in ``stream`` up to ``upto``; returns how many."""
    rows: list[Row] = []
    async for msg in read_messages(js, stream, 1, upto, (subject,)):
        headers = msg.headers or {}
        max_time = int(headers.get(MAX_TIME_HEADER, "0") or 0)
        rows.append((msg.metadata.sequence.stream, msg.subject, headers.get(MSG_ID_HEADER, ""), max_time, msg.data))
    if rows:
        await asyncio.to_thread(write_parquet, directory, partition, rows)
    return len(rows)


def write_parquet(directory: Path, partition: int, rows: list[Row]) -> None:
    seqs, subjects, ids, times, data = (list(col) for col in zip(*rows, strict=True))
    table = pa.table(
        {
            "seq": pa.array(seqs, pa.int64()),
            "subject": pa.array(subjects, pa.string()),
            "msg_id": pa.array(ids, pa.string()),
            "max_time": pa.array(times, pa.int64()),
            "data": pa.array(data, pa.binary()),
        }
    )
    directory.mkdir(parents=True, exist_ok=True)
    target = str(directory).replace("'", "''")
    with duckdb.connect() as con:
        con.register("batch", table)
        con.execute(
            f"COPY (SELECT seq, subject, msg_id, max_time, data, "
            f"CAST(make_timestamp(max_time // 1000) AS DATE) AS day, {int(partition)} AS partition "
            f"FROM batch ORDER BY seq) TO '{target}' (FORMAT parquet, PARTITION_BY (day, partition), "
            f"OVERWRITE_OR_IGNORE true, FILENAME_PATTERN 'events_{seqs[0]}_{seqs[-1]}_{{i}}')"
        )


def read_archive(directory: Path, partition: int, after: int = 0) -> list[tuple[int, bytes]]:
    """(seq, batch bytes) of one partition's archived messages after ``after``, in order, once each."""
    files = list(directory.glob(f"day=*/partition={int(partition)}/*.parquet"))
    if not files:
        return []
    with duckdb.connect() as con:
        rel = con.execute(
            "SELECT seq, any_value(data) FROM read_parquet(?, hive_partitioning = true) "
            "WHERE seq > ? GROUP BY seq ORDER BY seq",
            [[str(f) for f in files], after],
        )
        return [(int(seq), bytes(data)) for seq, data in rel.fetchall()]


def archive_bytes(directory: Path) -> int:
    """The archive's size on disk (0 when there is none)."""
    if not directory.is_dir():
        return 0
    return sum(f.stat().st_size for f in directory.rglob("*.parquet"))
