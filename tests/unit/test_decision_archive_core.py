"""The archive's row mapping and its read-only SQL guard (real DuckDB, in memory)."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.codec import encode_json
from contracts.decisions import Decision
from services.decision_log_archiver import core, query

json_value = (
    st.none() | st.integers() | st.text(max_size=8) | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
)


@given(
    st.builds(
        Decision,
        id=st.text(min_size=1, max_size=20),
        time=st.integers(min_value=0, max_value=2**62),
        source=st.sampled_from(["anomaly", "gatekeeper"]),
        event_type=st.text(max_size=10),
        action=st.text(max_size=6),
        count=st.integers(min_value=0, max_value=10**6),
        input=json_value,
        details=json_value,
        enforcement_actions=st.lists(st.text(max_size=4), max_size=2).map(tuple),
        resource_labels=st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
        dry_run=st.none() | st.booleans(),
    )
)
def test_hot_path_row_equals_the_contract_row(decision: Decision) -> None:
    """Reading raw JSON (the archiver's fast path) stores exactly what the contract says."""
    fast = core.row_of(core.row_decoder.decode(encode_json(decision)), 7)
    assert fast == core.to_row(decision, 7)


def test_rows_fit_the_table_and_time_is_generated() -> None:
    con = duckdb.connect()
    for statement in core.create_statements():
        con.execute(statement)
    d = Decision(
        id="x", time=1_767_225_600_123_456_789, source="gatekeeper", event_type="audit_violation", input={"a": 1}
    )
    appender = con.appender(core.TABLE, action="upsert")
    appender.append_rows([core.to_row(d, 1), core.to_row(d, 2)][:1])
    appender.flush()
    appender = con.appender(core.TABLE, action="upsert")
    appender.append_rows([core.to_row(d, 2)])  # redelivered: same id, one row
    appender.flush()
    rows = con.execute(
        "SELECT id, strftime(time, '%Y-%m-%dT%H:%M:%S.%f'), input->>'$.a', stream_seq FROM decisions"
    ).fetchall()
    assert rows == [("x", "2026-01-01T00:00:00.123456", "1", 2)]


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    for statement in core.create_statements():
        c.execute(statement)
    return c


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM decisions",
        "FROM decisions LIMIT 3",
        "WITH a AS (SELECT 1) SELECT * FROM a",
        "DESCRIBE decisions",
        "SHOW TABLES",
        "SUMMARIZE decisions",
        "EXPLAIN SELECT * FROM decisions",
        "SELECT * FROM range(3)",
        "SELECT * FROM positions",
    ],
)
def test_reads_are_allowed(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    query.run(con.cursor(), sql, 10)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO decisions (id, time_ns, source, event_type) VALUES ('a', 1, 's', 'e')",
        "DELETE FROM decisions",
        "UPDATE decisions SET action = 'x'",
        "DROP TABLE decisions",
        "CREATE TABLE x AS SELECT 1",
        "SELECT 1; DELETE FROM decisions",
        "COPY decisions TO '/tmp/x.csv'",
        "ATTACH '/tmp/other.duckdb' AS o",
        "SET threads = 1",
        "PRAGMA disable_checkpoint_on_shutdown",
        "CALL pragma_version()",
        "INSTALL httpfs",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "EXPLAIN ANALYZE SELECT * FROM read_text('/etc/hostname')",
    ],
)
def test_everything_else_is_refused(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    with pytest.raises(query.QueryRefused):
        query.run(con.cursor(), sql, 10)
    assert con.execute("SELECT count(*) FROM decisions").fetchone() == (0,)


def test_results_are_truncated_and_chunked() -> None:
    result = query.QueryResult(["n"], ["BIGINT"], [(i,) for i in range(5000)])
    chunks = [query.reply_decoder.decode(c) for c in query.reply_chunks(result, max_bytes=4096)]
    assert all(len(query._encoder.encode(c)) <= 4096 for c in chunks)
    assert [r[0] for c in chunks for r in c.rows] == list(range(5000))
    assert [c.more for c in chunks] == [True] * (len(chunks) - 1) + [False]
