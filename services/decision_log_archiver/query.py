"""Read-only SQL over the archive, and the day-partitioned Parquet export.

Used by the archiver's request/reply endpoint (``vigil.query.decisions``) and
by the CLI directly on the file when no archiver runs. No statement accepted
here can change the archive, by three independent locks:

1. DuckDB's own parser (``duckdb.extract_statements``) must find exactly one
   statement of type SELECT (which covers DESCRIBE, SHOW, SUMMARIZE, FROM …,
   VALUES, WITH …) or EXPLAIN.
2. The parsed tree (``json_serialize_sql``) may not call file readers
   (``read_csv``, ``read_text``, ``glob`` …) nor scan a file path given as a
   table name: the endpoint is reachable by anyone on the bus and must not
   turn into a file reader with the archiver's privileges.
3. The statement runs on its own cursor inside ``BEGIN TRANSACTION READ
   ONLY``, so DuckDB itself refuses any write that slipped through.

Each query sees one consistent snapshot (DuckDB MVCC), whatever the writer
commits meanwhile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import msgspec

from services.runtime.errors import VigilError

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_FILE_FUNCTIONS = re.compile(
    r"^(read_\w+|\w+_scan|parquet_\w+|sniff_csv|glob|query|query_table|iceberg_\w+|delta_\w+|getenv|"
    r"load_\w+|install_\w+|duckdb_secrets|which_secret)$",
    re.IGNORECASE,
)
_PATHLIKE = re.compile(r"[/\\.:~]")
_EXPLAIN = re.compile(r"^\s*EXPLAIN(\s+ANALY[SZ]E)?\s+", re.IGNORECASE)


class QueryRefused(VigilError):
    """The statement is not a read of the archive."""


class QueryFailed(VigilError):
    """DuckDB could not run the statement (syntax, unknown column …)."""


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise :class:`QueryRefused` unless ``sql`` is exactly one read-only statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryFailed(f"cannot parse: {exc}") from exc
    if len(statements) != 1:
        raise QueryRefused(f"one statement per query, got {len(statements)}")
    kind = statements[0].type
    if kind not in _ALLOWED:
        raise QueryRefused(f"only SELECT/EXPLAIN/DESCRIBE/SHOW/SUMMARIZE are allowed, not {kind.name}")
    inner = _EXPLAIN.sub("", sql, count=1) if kind == duckdb.StatementType.EXPLAIN else sql
    _check_tree(con, inner)


def _check_tree(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    raw = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree = json.loads(raw[0]) if raw else {}
    if tree.get("error"):
        raise QueryRefused(f"not a plain query: {tree.get('error_message', 'unsupported statement')}")
    for node in _walk(tree):
        name = node.get("function_name")
        if isinstance(name, str) and _FILE_FUNCTIONS.match(name):
            raise QueryRefused(f"function {name}() reads outside the archive")
        if node.get("type") == "BASE_TABLE" and _PATHLIKE.search(str(node.get("table_name", ""))):
            raise QueryRefused(f"table {node.get('table_name')!r} looks like a file path")


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def run(cur: duckdb.DuckDBPyConnection, sql: str, max_rows: int) -> QueryResult:
    """Check and run one read-only statement on ``cur`` (a fresh cursor, closed here)."""
    try:
        check_read_only(cur, sql)
        cur.execute("BEGIN TRANSACTION READ ONLY")
        try:
            cur.execute(sql)
            columns = [d[0] for d in cur.description or ()]
            types = [str(d[1]) for d in cur.description or ()]
            rows = cur.fetchmany(max_rows + 1) if cur.description else []
        finally:
            cur.execute("ROLLBACK")
    except duckdb.Error as exc:
        raise QueryFailed(str(exc)) from exc
    finally:
        cur.close()
    return QueryResult(columns, types, rows[:max_rows], truncated=len(rows) > max_rows)


EXPORT_SQL = (
    "COPY (SELECT *, CAST(make_timestamp(time_ns // 1000) AS DATE) AS day FROM decisions ORDER BY time_ns, id) "
    "TO '{dir}' (FORMAT parquet, PARTITION_BY (day), OVERWRITE_OR_IGNORE true, FILENAME_PATTERN 'decisions_{{i}}')"
)


def export_parquet(cur: duckdb.DuckDBPyConnection, directory: Path) -> QueryResult:
    """Write the archive as ``DIR/day=YYYY-MM-DD/decisions_N.parquet`` (UTC days) from one
    snapshot, on ``cur`` (a fresh cursor, closed here)."""
    target = str(directory.resolve()).replace("'", "''")
    try:
        cur.execute("BEGIN TRANSACTION READ ONLY")
        try:
            row = cur.execute(EXPORT_SQL.format(dir=target)).fetchone()
        finally:
            cur.execute("ROLLBACK")
    except duckdb.Error as exc:
        raise QueryFailed(str(exc)) from exc
    finally:
        cur.close()
    days = sorted(p.name for p in directory.glob("day=*"))
    return QueryResult(
        ["rows", "days", "dir"], ["BIGINT", "BIGINT", "VARCHAR"], [(row[0] if row else 0, len(days), str(directory))]
    )


# --- the wire format of the request/reply endpoint -----------------------------------


class QueryRequest(msgspec.Struct, frozen=True, kw_only=True):
    sql: str = ""
    export: str = ""  # a directory: write day-partitioned Parquet there instead of querying
    max_rows: int = 100_000


class QueryReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One chunk of an answer; the last one has ``more=False``."""

    columns: list[str] = []
    types: list[str] = []
    rows: list[Any] = []
    more: bool = False
    truncated: bool = False
    error: str = ""
    refused: bool = False


_encoder = msgspec.json.Encoder(enc_hook=str)
request_decoder = msgspec.json.Decoder(QueryRequest)
reply_decoder = msgspec.json.Decoder(QueryReply)


def reply_chunks(result: QueryResult, max_bytes: int) -> Iterator[bytes]:
    """The result as encoded :class:`QueryReply` chunks, each at most ``max_bytes``."""
    head = QueryReply(columns=result.columns, types=result.types, more=bool(result.rows))
    yield _encoder.encode(head)
    rows = result.rows
    start = 0
    step = 2000
    while start < len(rows):
        batch = [list(r) for r in rows[start : start + step]]
        data = _encoder.encode(QueryReply(rows=batch, more=start + len(batch) < len(rows), truncated=result.truncated))
        if len(data) > max_bytes and len(batch) > 1:
            step = max(1, len(batch) // 2)
            continue
        if len(data) > max_bytes:
            data = _encoder.encode(QueryReply(error=f"a row is larger than {max_bytes} bytes"))
        yield data
        start += len(batch)


def error_reply(message: str, refused: bool = False) -> bytes:
    return _encoder.encode(QueryReply(error=message, refused=refused))
